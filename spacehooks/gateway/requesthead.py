"""What the relay makes of a request head before sending it on: the host it names (an
absolute-form target's authority, else the one Host header), hop-by-hop headers out,
X-Forwarded-* in; and the short plain-text answers with which it refuses a request."""
from __future__ import annotations

import httptools

from spacehooks.gateway.credentials import CARRIERS, clean_bytes, may_carry
from spacehooks.gateway.upstream import HOP_BY_HOP

FORWARDED = {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
MAX_HEAD = 64 * 1024
TOO_LARGE = ("431 Request Header Fields Too Large", f"431: the request head is larger than {MAX_HEAD // 1024} KiB\n")


class Refused(Exception):
    """Raised in a parser callback: (status line, text) for the client."""


def text_answer(status: str, text: str, extra: str = "") -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n").encode() + body


def origin_form(url: bytes) -> tuple[bytes, bytes | None]:
    """(the target as an app expects it, the host it names or None). RFC 9112 3.2.2: in an
    absolute-form target (`http://host/path`, what proxies are sent) the authority is the host,
    whatever a Host header says; the app gets the origin form (`/path`) and that Host."""
    if url.startswith(b"/") or b"://" not in url:
        return url, None
    try:
        parts = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        raise Refused("400 Bad Request", "400: the request target could not be read\n") from None
    if (parts.schema or b"").lower() not in (b"http", b"https") or not parts.host:
        shown = url[:200].decode("latin-1")
        raise Refused("400 Bad Request", f"400: the request target {shown} is not http(s)\n")
    authority = parts.host.lower() + (b":%d" % parts.port if parts.port else b"")
    return (parts.path or b"/") + (b"?" + parts.query if parts.query else b""), authority


def rewrite(method: bytes, url: bytes, headers: list, peer: bytes, upgrade: bool):
    """(head bytes for a Space, host, the protocol an upgrade asks for (lower case; None when
    `upgrade` is false), whether the body is chunked, whether a Content-Length announces a body,
    the head for the app or None when it is the same). The head for a Space has the gateway's own
    credentials taken out (credentials.py); the app needs them to let members into private
    Spaces, and takes them out itself."""
    host = protocol = forwarded_for = proto = forwarded_host = None
    chunked = has_body = False
    full: list | None = None  # lines with our credentials, once one is seen
    target, authority = origin_form(url)
    lines = [b"%s %s HTTP/1.1\r\n" % (method, target)]
    for name, value in headers:
        low = name.lower()
        if low == b"host":
            if host is not None:
                # which one would the app believe? (a request-smuggling classic)
                raise Refused("400 Bad Request", "400: the request has more than one Host header\n")
            host = value
            if authority is not None:
                continue  # replaced by the target's authority, below
        elif low == b"upgrade" and upgrade:
            protocol = value.strip().lower()
        elif low == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
            continue
        elif low == b"content-length":
            has_body = has_body or value.strip() != b"0"
        if low in HOP_BY_HOP and not (upgrade and low in (b"connection", b"upgrade")):
            continue
        if low in FORWARDED:
            if low == b"x-forwarded-for":
                forwarded_for = forwarded_for or value
            elif low == b"x-forwarded-proto":
                proto = proto or value
            else:
                forwarded_host = forwarded_host or value
            continue
        if low in CARRIERS and may_carry(value):
            cleaned = clean_bytes(name, value)
            if cleaned != value:
                full = full if full is not None else list(lines)
                full.append(b"%s: %s\r\n" % (name, value))
                if cleaned is not None:
                    lines.append(b"%s: %s\r\n" % (name, cleaned))
                continue
        lines.append(b"%s: %s\r\n" % (name, value))
        if full is not None:
            full.append(lines[-1])
    tail_from = len(lines)  # what follows is the same in both heads
    if authority is not None:
        host = authority
        lines.append(b"Host: %s\r\n" % authority)
    lines.append(b"X-Forwarded-For: %s\r\n" % (forwarded_for + b", " + peer if forwarded_for else peer))
    lines.append(b"X-Forwarded-Proto: %s\r\n" % (proto or b"http"))
    lines.append(b"X-Forwarded-Host: %s\r\n" % (forwarded_host or host or b""))
    if chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    lines.append(b"\r\n")
    app_head = None if full is None else b"".join(full + lines[tail_from:])
    return b"".join(lines), host, protocol, chunked, has_body, app_head
