"""Static Spaces (sdk: static): answers planned from the deploy folder's manifest, no container.

`plan` turns a request into an answer (status, headers, and which file bytes) from the manifest
alone: a request path is only ever a key into it, and files are opened by blob id inside the
deploy folder. The relay sends the planned answer with sendfile (`staticsend.py`); the aiohttp
app (the first request after a deploy, and `gateway.relay: false`) streams it in chunks.
"""
from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from urllib.parse import quote, unquote

from aiohttp import web

from spacehooks import staticsite

log = logging.getLogger("spacehooks.gateway")

CACHE_CONTROL = "no-cache"  # revalidate each time: the ETag (the blob id) makes that cheap
CHUNK = 256 * 1024  # the app path's read size; memory per answer stays at this
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
ROUTES_KEPT = 4096  # request targets remembered per site (the cache starts over when full)
SMALL_FILE = 16 * 1024  # files up to this size are kept in memory once read ...
SMALL_KEPT = 4 * 1024 * 1024  # ... up to this much per deployed site


class File:
    __slots__ = ("oid", "size", "ctype", "encoding", "gz", "br", "answers")

    def __init__(self, path: str, entry: list):
        self.oid, self.size, self.gz, self.br = entry
        self.ctype, self.encoding = staticsite.content_type(path)
        self.answers: dict[str, Answer] = {}  # the 200 answer per stored file (plain, .gz, .br)


class Site:
    """One deployed commit of a static Space: its manifest and an open handle on its folder."""

    def __init__(self, space_id: str, commit: str, index: str, folder):
        self.space_id, self.commit, self.index = space_id, commit, index
        self.files = {path: File(path, entry) for path, entry in staticsite.read_manifest(folder).items()}
        self.fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        weakref.finalize(self, os.close, self.fd)  # when no answer in flight holds it any more
        self.routes: dict[str, tuple[int, str]] = {}  # request target -> where it leads
        self.small: dict[str, bytes] = {}  # contents of small files, up to SMALL_KEPT bytes in all
        self.small_size = 0

    def open(self, name: str) -> int:
        # names are blob ids from the manifest (checked when it was read), plus .gz/.br
        return os.open(name, OPEN_FLAGS, dir_fd=self.fd)


class Sites:
    """The deploy folder each static Space serves now, loaded once per deployed commit."""

    def __init__(self, settings):
        self.home = settings.home
        self._sites: dict[str, Site] = {}
        self._loading: dict[tuple[str, str], asyncio.Future] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="static")

    def close(self) -> None:
        self._thread.shutdown(wait=False)

    def cached(self, space: dict) -> Site | None:
        site = self._sites.get(space["id"])
        return site if site is not None and site.commit == space.get("commit") else None

    def forget(self, site: Site) -> None:
        if self._sites.get(site.space_id) is site:
            del self._sites[site.space_id]

    async def load(self, space: dict) -> Site:
        key = (space["id"], space["commit"])
        future = self._loading.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._loading[key] = loop.run_in_executor(self._thread, self._load, space)
            future.add_done_callback(lambda _: self._loading.pop(key, None))
        site = await asyncio.shield(future)
        self._sites[site.space_id] = site
        return site

    def _load(self, space: dict) -> Site:
        folder = staticsite.deploy_dir(self.home, space["id"], space["commit"])
        if not (folder / staticsite.MANIFEST).is_file():
            # deployed before this version wrote deploy folders, or removed by hand: write it now
            log.info("%s: writing the static files of %s", space["id"], space["commit"][:12])
            staticsite.materialise(self.home, space["id"], space["repo_path"], space["commit"])
        return Site(space["id"], space["commit"], index_of(space), folder)


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
    body = f"404: {rel} is not in this Space\n".encode()
    return Answer(404, "Not Found", [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", CACHE_CONTROL),
                                     ("Content-Length", str(len(body)))], body)


def index_of(space: dict) -> str:
    return str((space.get("config") or {}).get("app_file") or "index.html").lstrip("/")


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


class StaticFiles:
    """The aiohttp app's side: the same answers, the file streamed in CHUNK pieces."""

    def __init__(self, sites: Sites):
        self.sites = sites

    async def serve(self, request: web.Request, space: dict, extra_headers, fresh) -> web.StreamResponse:
        site = self.sites.cached(space)
        if site is None:
            # the snapshot may be a second old: load what the store says serves now
            space = await fresh() or space
            site = await self.sites.load(space)
        answer = plan(site, request.raw_path, request.headers.get)
        fd = -1
        if answer.file is not None and request.method != "HEAD":
            try:
                fd = site.open(answer.file[0])
            except FileNotFoundError:  # removed by gc: load the folder the store names now
                self.sites.forget(site)
                site = await self.sites.load(await fresh() or space)
                answer = plan(site, request.raw_path, request.headers.get)
                fd = site.open(answer.file[0]) if answer.file is not None else -1
        response = web.StreamResponse(status=answer.status, reason=answer.reason)
        for key, value in answer.headers:
            response.headers[key] = value
        extra_headers(response.headers)
        try:
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            if fd >= 0:
                _, offset, left = answer.file
                while left > 0:
                    data = os.pread(fd, min(CHUNK, left), offset)
                    if not data:  # the file shrank under us: the client must see the answer cut
                        request.transport.close()
                        return response
                    await response.write(data)
                    offset += len(data)
                    left -= len(data)
            elif answer.body:
                await response.write(answer.body)
            await response.write_eof()
            return response
        finally:
            if fd >= 0:
                os.close(fd)
