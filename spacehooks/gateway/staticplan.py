"""What a static Space answers to a GET or HEAD, decided from its deploy folder's manifest alone:
status, headers, and which bytes of which stored file (by blob id). Used by the relay
(`staticsend.py`) and by the aiohttp app (`staticspace.py`) alike, so both answer the same."""
from __future__ import annotations

import posixpath
import time
from email.utils import formatdate
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from spacehooks.build import staticsite

if TYPE_CHECKING:
    from spacehooks.gateway.staticspace import Site

CACHE_CONTROL = "no-cache"  # revalidate each time: the ETag (the blob id) makes that cheap
ROUTES_KEPT = 4096  # request targets remembered per site (the cache starts over when full)


class File:
    __slots__ = ("oid", "size", "ctype", "encoding", "gz", "br", "answers")

    def __init__(self, path: str, entry: list):
        self.oid, self.size, self.gz, self.br = entry
        self.ctype, self.encoding = staticsite.content_type(path)
        self.answers: dict[str, Answer] = {}  # the 200 answer per stored file (plain, .gz, .br)


class Answer:
    """What to send: status, headers, and a body of bytes or of a file's (name, offset, length)."""
    __slots__ = ("status", "reason", "headers", "body", "file", "_head")

    def __init__(self, status: int, reason: str, headers: list, body: bytes = b"", file=None):
        self.status, self.reason, self.headers, self.body, self.file = status, reason, headers, body, file
        self._head = None

    def head(self) -> bytes:
        """The status line and headers as bytes (made once per answer object)."""
        if self._head is None:
            lines = [b"HTTP/1.1 %d %s\r\n" % (self.status, self.reason.encode())]
            lines += [b"%s: %s\r\n" % (k.encode(), v.encode("latin-1")) for k, v in self.headers]
            self._head = b"".join(lines)
        return self._head


_date = [0, b""]


def date_line() -> bytes:
    now = int(time.time())
    if _date[0] != now:
        _date[:] = now, b"Date: %s\r\n" % formatdate(now, usegmt=True).encode()
    return _date[1]


def not_found(rel: str) -> Answer:
    body = f"404: {rel} is not in this Space\n".encode("utf-8", "replace")
    return Answer(404, "Not Found", [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", CACHE_CONTROL),
                                     ("Content-Length", str(len(body)))], body)


def locate(site: Site, target: str) -> tuple[int, str]:
    """(200, manifest path), (301, Location) or (404, the path as the 404 page names it)."""
    found = site.routes.get(target)
    if found is None:
        if len(site.routes) >= ROUTES_KEPT:
            site.routes.clear()
        found = site.routes[target] = _locate(site, target)
    return found


def _locate(site: Site, target: str) -> tuple[int, str]:
    raw_path, _, query = target.partition("?")
    raw_path = raw_path.partition("#")[0]
    decoded = unquote(raw_path)
    rel = posixpath.normpath(decoded).lstrip("/")
    if "\x00" in decoded or rel.startswith("..") or rel == ".git" or rel.startswith(".git/"):
        return 404, rel
    if rel in ("", "."):
        return (200, site.index) if site.index in site.files else (404, rel)
    if rel in site.files:
        return 200, rel
    folder = posixpath.join(rel, "index.html")
    if folder not in site.files:
        return 404, rel
    if decoded.endswith("/"):
        return 200, folder
    # a folder: its index.html's relative links need the trailing slash. Built from the
    # normalised path, quoted: never `//host` or `/\host` (a redirect off this site)
    return 301, "/" + quote(rel, safe="/!$&'()*+,;=:@-._~") + "/" + ("?" + query if query else "")


def plan(site: Site, target: str, header) -> Answer:
    """The answer to GET `target` (the raw request target); header(name) -> value or None."""
    status, where = locate(site, target)
    if status == 404:
        return not_found(where)
    if status == 301:
        return Answer(301, "Moved Permanently", [("Location", where), ("Content-Length", "0")])
    file = site.files[where]
    etag = f'"{file.oid}"'
    if _matches(header("if-none-match"), file.oid):
        headers = [("ETag", etag), ("Cache-Control", CACHE_CONTROL)]
        if file.gz or file.br:
            headers.append(("Vary", "Accept-Encoding"))
        return Answer(304, "Not Modified", headers)
    ranged = header("range")
    if ranged is not None and (header("if-range") in (None, etag)):
        span = _range(ranged, file.size)
        if span is None:
            return Answer(416, "Range Not Satisfiable", _headers(file, None, 0, f"bytes */{file.size}"))
        if span != (0, file.size):
            start, end = span
            return Answer(206, "Partial Content", _headers(file, None, end - start,
                                                           f"bytes {start}-{end - 1}/{file.size}"),
                          file=(file.oid, start, end - start))
    name, size, coding = file.oid, file.size, None
    if (file.br or file.gz) and not file.encoding:
        accepted = _encodings(header("accept-encoding"))
        if file.br and "br" in accepted:
            name, size, coding = file.oid + ".br", file.br, "br"
        elif file.gz and "gzip" in accepted:
            name, size, coding = file.oid + ".gz", file.gz, "gzip"
    # the same answer for every request of this file and encoding: made once
    answer = file.answers.get(name)
    if answer is None:
        answer = file.answers[name] = Answer(200, "OK", _headers(file, coding, size), file=(name, 0, size))
    return answer


def _headers(file: File, coding: str | None, length: int, content_range: str | None = None) -> list:
    headers = [("ETag", f'"{file.oid}"'), ("Cache-Control", CACHE_CONTROL), ("Content-Type", file.ctype)]
    if file.gz or file.br:
        headers.append(("Vary", "Accept-Encoding"))
    if file.encoding or coding:
        headers.append(("Content-Encoding", file.encoding or coding))
    headers.append(("Accept-Ranges", "bytes"))
    if content_range:
        headers.append(("Content-Range", content_range))
    headers.append(("Content-Length", str(length)))
    return headers


def _matches(value: str | None, oid: str) -> bool:
    """If-None-Match, compared weakly: every copy of one blob (plain, gzip, brotli) is the same."""
    if not value:
        return False
    for tag in value.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/").strip('"') == oid:
            return True
    return False


def _range(value: str, size: int) -> tuple[int, int] | None:
    """One `bytes=` range as (start, end exclusive); the whole file for what we do not
    honour (several ranges, other units, nonsense), None when it lies past the end."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return 0, size
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()) \
            or (last and not last.isdigit()):
        return 0, size
    if not first:  # the last N bytes
        n = int(last)
        return (max(0, size - n), size) if n > 0 and size > 0 else None
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if start >= size or (last and int(last) < start):
        return None if start >= size else (0, size)
    return start, end


def _encodings(value: str | None) -> set[str]:
    accepted = set()
    for item in (value or "").lower().split(","):
        name, _, params = item.partition(";")
        q = params.strip()
        if q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        accepted.add(name.strip())
    return accepted
