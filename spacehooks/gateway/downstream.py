"""The relay's side towards a client: requests parsed by llhttp one at a time, rewritten
(hop-by-hop headers out, X-Forwarded-* in) and sent to the route the relay picks for each."""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

import httptools

from spacehooks.gateway.requesthead import MAX_HEAD, TOO_LARGE, Refused, origin_form, rewrite, text_answer
from spacehooks.gateway.staticsend import StaticAnswer
from spacehooks.gateway.staticspace import Site
from spacehooks.gateway.upstream import IDEMPOTENT, Exchange, Pausable, Upstream

if TYPE_CHECKING:
    from spacehooks.gateway.relay import Relay

log = logging.getLogger("spacehooks.gateway")

REPLAY_BYTES = 1024 * 1024  # a request up to this size is kept until answered, to send it again
HIGH_WATER = 256 * 1024  # stop reading a client while this much waits for its upstream
HEAD_SECONDS = 30.0  # a request head must arrive within this


class Downstream(Pausable):
    """A client connection: requests parsed one at a time, each sent to its route."""

    def __init__(self, relay: Relay):
        self.relay = relay
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.peer = ""
        self.peer_bytes = b""
        self.upstream: Upstream | StaticAnswer | None = None
        self.current: Exchange | None = None  # being answered
        self.parsing: Exchange | None = None  # being read (may be `current`, or queued behind it)
        self.queue: deque[Exchange] = deque()
        self.paused: set[str] = set()
        self.tunnel = False
        self.streaming: str | None = None  # the Space whose WebSocket or event stream is open
        self.closed = False
        self.last_active = 0.0
        self.head_started: float | None = None
        self.head_started_at = 0.0  # when the request now being read began
        self.body_deadline: float | None = None  # while a request body is being read
        self.last_check = 0.0
        self._url = b""
        self._headers: list = []
        self._head_size = 0

    # -- connection ----------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        self.peer_bytes = self.peer.encode()
        self.now = asyncio.get_running_loop().time
        self.last_active = self.now()
        if not self.relay.admit(self):
            self.closed = True
            transport.write(text_answer("503 Service Unavailable", "503: the gateway has too many open connections; "
                                         "try again in a moment\n", "Retry-After: 1\r\n"))
            self.relay.metrics.answered(None, 503, 0, None)
            # closed a moment later, its request read and dropped meanwhile: closing with unread
            # bytes would reset the connection, and the client might never see the answer
            transport.write_eof()
            asyncio.get_running_loop().call_later(0.5, transport.close)
            return
        self.relay.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.relay.connections.discard(self)
        if self.streaming is not None:
            self.stream_closed()
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.relay.connections.discard(self)  # its room is free now, not when the loop gets to it
            self.transport.close()
            if self.streaming is not None:
                self.stream_closed()
            if self.upstream is not None:
                self.upstream.close()
                self.upstream = None

    def stream_opened(self, space_id: str) -> None:
        if self.streaming is None:
            self.streaming = space_id
            self.relay.registry.stream_opened(space_id)

    def stream_closed(self) -> None:
        space_id, self.streaming = self.streaming, None
        self.relay.registry.stream_closed(space_id)

    def idle(self) -> bool:
        """Kept alive between requests: closing it loses nothing."""
        return (self.current is None and self.head_started is None and not self.tunnel and not self.queue
                and not self.closed)

    def check_idle(self, now: float) -> None:
        settings = self.relay.settings
        since, self.last_check = self.last_check or now, now
        if self.body_deadline is not None and not self.tunnel:
            if self.paused:
                self.body_deadline += now - since  # waiting for the app to read: not the client's time
            elif now > self.body_deadline:
                seconds = settings["gateway.body_timeout_seconds"]
                self.refuse("408 Request Timeout", f"408: the request body did not arrive within {seconds:g} s\n")
                return
        current = self.current
        if current is not None and current.answered and now - self.last_active > settings["gateway.stream_idle_seconds"] > 0:
            # a WebSocket, or an answer still arriving (an event stream), with nothing sent either way
            self.close()
            return
        if self.head_started is not None:
            if now - self.head_started > HEAD_SECONDS:
                self.refuse("408 Request Timeout", f"408: no whole request head within {HEAD_SECONDS:g} s\n")
        elif self.idle() and now - self.last_active > settings["gateway.idle_seconds"]:
            self.close()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause("client")

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume("client")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_active = self.now()
        if self.tunnel:
            if self.current is not None:
                self.send(self.current, data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # the rest is the upgraded protocol's, sent once the app agrees
            rest = data[upgrade.args[0]:]
            self.tunnel = True
            if rest and self.current is not None:
                self.send(self.current, rest)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, Refused):
                self.refuse(*exc.__context__.args)
            else:
                log.error("gateway relay: bug while reading a request", exc_info=exc.__context__ or exc)
                self.refuse("500 Internal Server Error", "500: the gateway failed; see its log\n")
        except httptools.HttpParserError as exc:
            self.refuse("400 Bad Request", f"400: the request could not be read: {exc}\n")

    def refuse(self, status: str, text: str, extra: str = "") -> None:
        if self.current is None or not self.current.answered:
            self.transport.write(text_answer(status, text, extra))
            space_id = self.current.target[1] if self.current is not None else None
            self.relay.metrics.answered(space_id, int(status[:3]), 0, None)
        self.close()

    # -- parser callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url, self._headers, self._head_size = b"", [], 0
        self.head_started = self.last_active

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > MAX_HEAD:
            raise Refused(*TOO_LARGE)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD:
            raise Refused(*TOO_LARGE)

    def on_headers_complete(self) -> None:
        parser = self.parser
        method = parser.get_method()
        upgrade = parser.should_upgrade()
        self.head_started_at, self.head_started = self.head_started or self.last_active, None
        head, host, protocol, chunked, has_body, app_head = rewrite(method, self._url, self._headers, self.peer_bytes,
                                                                    upgrade)
        target = self.relay.route(host, protocol, method, has_body or chunked)
        if app_head is not None and target is self.relay.app_target:
            head = app_head  # the app checks a private Space's members by these, and strips them itself
        # HTTP/1.0 clients get their answer framed by the end of the connection
        keep_alive = parser.should_keep_alive() and not upgrade and parser.get_http_version() != "1.0"
        exchange = Exchange(target, head, keep_alive, chunked, method == b"HEAD", upgrade,
                            method in IDEMPOTENT)
        exchange.started = self.head_started_at
        if isinstance(target[0], Site):  # answered by the relay itself, from a static Space's files
            exchange.request = (method, origin_form(self._url)[0], self._headers)
            exchange.complete = True  # no body: the answer may end before llhttp says so
        self._head_size = 0
        self.parsing = exchange
        self.body_deadline = self.head_started_at + self.relay.body_seconds
        if self.current is None:
            self.start(exchange)
        else:
            self.queue.append(exchange)
            self.pause("queue")

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        self.send(exchange, b"%x\r\n%s\r\n" % (len(body), body) if exchange.chunked else body)

    def on_message_complete(self) -> None:
        exchange = self.parsing
        if exchange.chunked:
            self.send(exchange, b"0\r\n\r\n")
        exchange.complete = True
        self.body_deadline = None

    # -- to the upstream -------------------------------------------------------------------
    def send(self, exchange: Exchange, data: bytes) -> None:
        if exchange.replay is not None:
            exchange.replay_size += len(data)
            if exchange.replay_size > REPLAY_BYTES:
                exchange.replay = None
            else:
                exchange.replay.append(data)
        upstream = self.upstream
        if exchange is self.current and upstream is not None and upstream.transport is not None:
            exchange.sent = True
            upstream.write(data)
        else:
            exchange.waiting.append(data)
            exchange.waiting_size += len(data)
            if exchange.waiting_size > HIGH_WATER:
                self.pause("upstream")

    def start(self, exchange: Exchange) -> None:
        self.current = exchange
        upstream = self.upstream
        if upstream is not None and upstream.target == exchange.target and upstream.reusable(exchange):
            upstream.begin(exchange)
            return
        if upstream is not None:
            upstream.close()
        kind = StaticAnswer if isinstance(exchange.target[0], Site) else Upstream
        self.upstream = kind(self, exchange.target)
        self.upstream.connect(exchange)

    def upstream_failed(self, upstream: Upstream, exchange: Exchange, reason: str) -> None:
        """The upstream closed or refused before answering: the app retries, or the client is told."""
        if upstream is self.upstream:
            self.upstream = None
        if self.closed or exchange is None or exchange is not self.current:
            return
        if exchange.answered:
            self.close()  # half an answer was sent: the client must see it cut
            return
        if exchange.target is not self.relay.app_target and exchange.replay is not None \
                and (exchange.idempotent or not exchange.sent):
            # safe to send again: the app waits for a restarting container, wakes a sleeping one,
            # or explains
            exchange.target = self.relay.app_target
            exchange.sent = False
            exchange.waiting = list(exchange.replay)
            exchange.waiting_size = exchange.replay_size
            self.start(exchange)
            return
        log.warning("gateway relay: %s", reason)
        if exchange.sent and not exchange.idempotent:
            self.refuse("502 Bad Gateway", "502: the app closed the connection without answering; the request "
                        "was not sent again (it may have reached the app, and repeating it is not safe)\n")
            return
        self.refuse("502 Bad Gateway", "502: the gateway could not reach the app; try again in a moment\n")

    def finished(self, exchange: Exchange, upstream_keeps: bool) -> None:
        """The answer to `exchange` was relayed whole."""
        now = self.now()
        if self.streaming is not None:
            self.stream_closed()
        if exchange.target[1] is not None:  # a Space's answer; the app counts those it makes itself
            self.relay.metrics.answered(exchange.target[1], exchange.status, exchange.nbytes, now - exchange.started)
        if not upstream_keeps and self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        if not exchange.keep_alive or not exchange.complete:
            # a client that sends a body after its answer, or wants to close: end here
            self.close()
            return
        self.current = None
        self.last_active = now
        if self.queue:
            self.start(self.queue.popleft())
        if not self.queue and self.paused:
            self.resume("queue")
