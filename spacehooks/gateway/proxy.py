"""Pass HTTP (streamed both ways), server-sent events and WebSockets through to a Space.

A request that cannot reach the container is retried against a freshly read port: during a
redeploy the runner switches the port and then retires the old container, so a request that
raced the switch lands on the new one instead of failing. Only what is safe to repeat is
retried once it may have reached the app: idempotent methods (RFC 9110 9.2.2). Any other
request is retried only when its connection could not be made; it goes on a connection of
its own, never a kept-alive one the app may be closing at that moment.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import aiohttp
import yarl
from aiohttp import web
from multidict import CIMultiDict

from spacehooks.gateway import credentials
from spacehooks.gateway.registry import authority

log = logging.getLogger("spacehooks.gateway")

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection"}
WS_OWN = {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
          "sec-websocket-protocol", "sec-websocket-accept", "content-length"}
# Bodies up to this size are read before sending so that a retry can send them again.
REPLAYABLE_BYTES = 1024 * 1024
# Small answers are read whole: one write instead of a streamed loop.
BUFFER_BYTES = 64 * 1024
# Tries per request while the Space's port does not answer (see Gateway._forward for the pauses).
RETRIES = 6
# A container that just exited or is being started again can swallow a connection attempt
# (its address routed to a bridge with nothing behind it): the kernel would retry for two minutes.
CONNECT_SECONDS = 3.0
# nothing was sent: a connection refused, or not made within CONNECT_SECONDS (sock_read is off,
# so this timeout is the connect's)
NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError)
UNREACHABLE = (*NOT_CONNECTED, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class Unreachable(Exception):
    """The Space's container did not take the connection, even on the second try."""


class NotRepeated(Unreachable):
    """The app dropped a request that is not safe to send twice; it was not sent again."""


def origin_form(request: web.Request) -> str:
    """The target as the app expects it: an absolute-form one (`http://host/path`) as `/path`."""
    raw = request.raw_path
    return raw if raw.startswith("/") else request.rel_url.raw_path_qs


def upstream_headers(request: web.Request, drop: set[str] = frozenset()) -> CIMultiDict:
    headers = CIMultiDict()
    for key, value in request.headers.items():
        lower = key.lower()
        if lower not in HOP_BY_HOP and lower not in drop:
            value = credentials.clean(lower, value)  # a member's token never reaches Space code
            if value is not None:
                headers.add(key, value)
    if not request.raw_path.startswith("/"):
        # RFC 9112 3.2.2: the authority in an absolute-form target is the host (aiohttp routes by it)
        target = yarl.URL(request.raw_path, encoded=True)
        headers["Host"] = (target.raw_host or "") + (f":{target.explicit_port}" if target.explicit_port else "")
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is not None and sock.family == socket.AF_UNIX:
        # only the gateway's relay reaches the app's private socket; it wrote X-Forwarded-* already
        return headers
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = request.headers.get("X-Forwarded-Proto", request.scheme)
    headers["X-Forwarded-Host"] = request.headers.get("X-Forwarded-Host", request.host)
    return headers


class Proxy:
    def __init__(self):
        self.session: aiohttp.ClientSession | None = None
        self.once: aiohttp.ClientSession | None = None  # a connection per request

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_SECONDS, sock_read=None)
        self.session, self.once = (
            aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                  cookie_jar=aiohttp.DummyCookieJar())
            for connector in (aiohttp.TCPConnector(limit=0, keepalive_timeout=30, enable_cleanup_closed=True),
                              aiohttp.TCPConnector(limit=0, force_close=True, enable_cleanup_closed=True)))

    async def close(self) -> None:
        for session in (self.session, self.once):
            if session is not None:
                await session.close()

    async def forward(self, request: web.Request, ports, extra_headers) -> web.StreamResponse:
        """`ports` is an async iterator factory of the Space's (host, port): first the cached
        address, then a fresh one."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, ports, extra_headers)
        body: bytes | aiohttp.StreamReader | None = None
        replayable = True
        idempotent = request.method in IDEMPOTENT
        session = self.session if idempotent else self.once
        if request.body_exists:
            length = request.content_length
            if length is not None and length <= REPLAYABLE_BYTES:
                body = await request.read()
            else:
                body, replayable = request.content, False
        headers = upstream_headers(request)
        last_error: Exception | None = None
        # closed here, not by the loop's finalizer hook (a thread-safe wake-up for every request)
        async with contextlib.aclosing(ports(RETRIES if replayable else 1)) as candidates:
            async for port in candidates:
                url = f"http://{authority(port)}{origin_form(request)}"
                try:
                    upstream = await session.request(
                        request.method, url, headers=headers, data=body, allow_redirects=False,
                        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"))
                except NOT_CONNECTED as exc:  # nothing was sent
                    last_error = exc
                    continue
                except UNREACHABLE as exc:
                    if not idempotent:
                        raise NotRepeated(str(exc)) from exc
                    last_error = exc
                    continue
                try:
                    length = upstream.content_length
                    if length is not None and length <= BUFFER_BYTES:
                        try:
                            data = await upstream.read()
                        except (aiohttp.ClientPayloadError, *UNREACHABLE) as exc:
                            # nothing was sent to the client yet: as good as never reached, for
                            # a request that may be repeated
                            if not idempotent:
                                raise NotRepeated(str(exc)) from exc
                            last_error = exc
                            continue
                        return self._whole(upstream, data, extra_headers)
                    return await self._relay(request, upstream, extra_headers)
                finally:
                    upstream.release()
        raise Unreachable(str(last_error))

    def _whole(self, upstream: aiohttp.ClientResponse, data: bytes, extra_headers) -> web.Response:
        headers = _answer_headers(upstream)
        extra_headers(headers)
        response = web.Response(status=upstream.status, reason=upstream.reason, headers=headers)
        response.body = data
        # aiohttp would recompute it; keep the upstream's (HEAD answers have no body)
        response.headers["Content-Length"] = str(upstream.content_length)
        return response

    async def _relay(self, request, upstream: aiohttp.ClientResponse, extra_headers) -> web.StreamResponse:
        headers = _answer_headers(upstream)
        extra_headers(headers)
        length = upstream.content_length
        if length is None:
            headers.pop("Content-Length", None)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (aiohttp.ClientPayloadError, *UNREACHABLE) as exc:
            # Half an answer was sent: cut the connection so the client sees it incomplete.
            log.warning("%s: the app closed the connection mid-answer: %s", request.host, exc)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response

    async def _websocket(self, request: web.Request, ports, extra_headers) -> web.StreamResponse:
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        headers = upstream_headers(request, drop=WS_OWN)
        upstream = None
        last_error: Exception | None = None
        async with contextlib.aclosing(ports(RETRIES)) as candidates:
            async for port in candidates:
                try:
                    upstream = await self.session.ws_connect(
                        f"http://{authority(port)}{origin_form(request)}", headers=headers, protocols=protocols,
                        autoping=True, compress=0, max_msg_size=0)
                    break
                except aiohttp.WSServerHandshakeError as exc:
                    return web.Response(status=exc.status, text=exc.message or "WebSocket refused")
                except UNREACHABLE as exc:
                    last_error = exc
        if upstream is None:
            raise Unreachable(str(last_error))
        client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else (),
                                       autoping=True, compress=False, max_msg_size=0)
        extra_headers(client.headers)
        try:
            await client.prepare(request)
        except BaseException:
            await upstream.close()
            raise
        pumps = [asyncio.ensure_future(_pump(client, upstream)), asyncio.ensure_future(_pump(upstream, client))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await upstream.close()
            await client.close()
        return client


async def _pump(source, sink) -> None:
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
            break
    if not sink.closed:
        await sink.close(code=source.close_code or aiohttp.WSCloseCode.OK)


def _answer_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict:
    """A Space's answer headers to pass on: no hop-by-hop ones, never our cookie set by it."""
    return CIMultiDict((k, v) for k, v in upstream.headers.items()
                       if k.lower() not in HOP_BY_HOP and not (k.lower() == "set-cookie" and credentials.sets_ours(v)))
