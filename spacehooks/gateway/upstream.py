"""The relay's side towards a Space's container (or the app's socket): one request at a time
on a kept-alive connection, the answer parsed by llhttp and passed on, re-framed where needed."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from spacehooks.gateway.credentials import sets_ours
from spacehooks.gateway.registry import authority

if TYPE_CHECKING:
    from spacehooks.gateway.downstream import Downstream

# RFC 9110 9.2.2: sending one of these twice has the effect of sending it once
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
# A connection to a container that just exited, or is being started again, can hang (its address
# routed to a bridge with nothing behind it) for the kernel's two minutes of SYN retries: give up
# sooner and let the app's path (which waits for a restarting container) take the request.
CONNECT_SECONDS = 3.0
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
              b"upgrade", b"proxy-authenticate", b"proxy-authorization"}


class Target(tuple):
    """(address, space id or None, header lines added to answers, lower-case names they replace);
    address: the Space's (host, port) as its engine gives it, or the app's socket path."""
    __slots__ = ()


class Exchange:
    """One request and its answer."""
    __slots__ = ("target", "waiting", "waiting_size", "replay", "replay_size", "complete", "keep_alive",
                 "chunked", "head_only", "upgrade", "answered", "request", "idempotent", "sent", "status", "nbytes",
                 "started")

    def __init__(self, target, head: bytes, keep_alive: bool, chunked: bool, head_only: bool, upgrade: bool,
                 idempotent: bool = True):
        self.target = target
        self.waiting: list[bytes] = [head]  # bytes for the upstream not yet written
        self.waiting_size = len(head)
        self.replay: list[bytes] | None = [head]
        self.replay_size = len(head)
        self.complete = False
        self.keep_alive, self.chunked, self.head_only, self.upgrade = keep_alive, chunked, head_only, upgrade
        self.answered = False
        self.request = None  # (method, target, headers) for an answer the relay makes itself
        self.idempotent = idempotent
        self.sent = False  # some of it was written to a connection: it may have reached the app
        self.status = 0  # the answer's, for metrics
        self.nbytes = 0  # of the answer's body sent
        self.started = 0.0  # loop time its head began to arrive


class Pausable(asyncio.Protocol):
    """Reading stops while any reason to pause holds (a full buffer on the other side, a queue)."""
    transport: asyncio.Transport | None
    closed: bool
    paused: set[str]

    def pause(self, reason: str) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.paused:
            self.paused.discard(reason)
            if not self.paused and self.transport is not None and not self.closed:
                self.transport.resume_reading()


class Upstream(Pausable):
    """The connection to a Space's container ((host, port)) or to the app's socket."""

    def __init__(self, downstream: Downstream, target: Target):
        self.down = downstream
        self.target = target
        self.transport = None
        self.exchange: Exchange | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.tunnel = False
        self.closed = False
        self.paused: set[str] = set()
        self._headers: list = []
        # what one read of the answer brought for the client (its head, body pieces), sent on in
        # one write: a small answer costs the client's side one send, not one per callback
        self._head = b""
        self._body: list[bytes] = []
        self._reason = b""
        self._status = 0
        self._rechunk = False  # the body goes to the client chunk-encoded by us
        self._until_eof = False  # the upstream ends this answer by closing

    def connect(self, exchange: Exchange) -> None:
        self.exchange = exchange
        loop = asyncio.get_running_loop()
        address = self.target[0]
        if isinstance(address, tuple):
            coro = loop.create_connection(lambda: self, *address)
        else:
            coro = loop.create_unix_connection(lambda: self, address)
        loop.create_task(asyncio.wait_for(coro, CONNECT_SECONDS)).add_done_callback(self._connected)

    def where(self) -> str:
        address = self.target[0]
        return authority(address) if isinstance(address, tuple) else str(address)

    def _connected(self, task: asyncio.Task) -> None:
        error = None if task.cancelled() else task.exception()
        if (task.cancelled() or error is not None) and not self.closed:
            self.closed = True
            why = "not within %gs" % CONNECT_SECONDS if isinstance(error, asyncio.TimeoutError) else error
            self.down.upstream_failed(self, self.exchange, f"cannot connect to {self.where()}: {why}")

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.closed or self.down.closed:
            transport.close()
            return
        if self.paused:  # the client fell behind while this connection was being made
            transport.pause_reading()
        self.begin(self.exchange)

    def begin(self, exchange: Exchange) -> None:
        self.exchange = exchange
        if self._status == -1:
            self.parser = httptools.HttpResponseParser(self)
        self._status = 0
        waiting, exchange.waiting, exchange.waiting_size = exchange.waiting, [], 0
        exchange.sent = True
        self.transport.write(waiting[0] if len(waiting) == 1 else b"".join(waiting))
        if self.down.paused:
            self.down.resume("upstream")

    def reusable(self, exchange: Exchange) -> bool:
        # a request that must not be sent twice gets a fresh connection: on a kept-alive one the
        # app may close (its keep-alive timeout) just as the request goes out, and then nobody
        # knows whether it arrived
        return not self.closed and self.transport is not None and not self.tunnel and exchange.idempotent

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def pause_writing(self) -> None:
        self.down.pause("upstream-full")

    def resume_writing(self) -> None:
        self.down.resume("upstream-full")

    def data_received(self, data: bytes) -> None:
        down = self.down
        down.last_active = down.now()  # a stream that is sending is not idle
        if self.tunnel:
            down.transport.write(data)
            return
        try:
            self.parser.feed_data(data)
            if self._head or self._body:
                self._flush()
        except httptools.HttpParserUpgrade as upgrade:
            self.tunnel = True
            self._flush()
            rest = data[upgrade.args[0]:]
            if rest:
                self.down.transport.write(rest)
        except httptools.HttpParserError as exc:
            self._flush()
            self.closed = True
            self.transport.close()
            self.down.upstream_failed(self, self.exchange, f"unreadable answer from {self.where()}: {exc}")

    def connection_lost(self, exc) -> None:
        was_closed, self.closed = self.closed, True
        exchange = self.exchange
        if was_closed or exchange is None or exchange is not self.down.current:
            return
        if self.tunnel:
            self.down.close()
        elif self._until_eof and exchange.answered:
            if self._rechunk:
                self.down.transport.write(b"0\r\n\r\n")
                self.exchange = None
                self.down.finished(exchange, False)
            else:
                self.down.close()
        else:
            self.down.upstream_failed(self, exchange, f"{self.where()} closed the connection: {exc or 'no answer'}")

    # -- parser callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.exchange is None:
            raise ValueError("an answer nobody asked for")  # ends the connection (data_received)
        self._headers, self._reason = [], b""

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange, down = self.exchange, self.down
        status = self._status = self.parser.get_status_code()
        interim = 100 <= status < 200 and status != 101
        _, space_id, extra, replaced = self.target
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, self._reason)]
        length = chunked = stream = False
        for name, value in self._headers:
            low = name.lower()
            if low == b"content-length":
                length = True
            elif low == b"content-type":
                stream = value.startswith(b"text/event-stream")
            elif low == b"transfer-encoding":
                chunked = True
                continue
            if low in HOP_BY_HOP and not (status == 101 and low in (b"connection", b"upgrade")):
                continue
            if low in replaced or (low == b"set-cookie" and space_id is not None and sets_ours(value)):
                continue
            lines.append(b"%s: %s\r\n" % (name, value))
        if extra:
            lines.append(extra)
        framed_by_us = not (exchange.head_only or interim or status in (101, 204, 304) or length)
        # chunk-encoded anew (also an answer that ends with its connection) so the client's stays open
        self._rechunk = framed_by_us and exchange.keep_alive
        self._until_eof = framed_by_us and not chunked
        if self._rechunk:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        if not interim and status != 101 and (not exchange.keep_alive or exchange.upgrade):
            exchange.keep_alive = False
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        exchange.answered = exchange.answered or not interim
        if not interim:
            exchange.status = status
        exchange.replay = None
        self._head += b"".join(lines)  # after a 100 Continue the same read may bring
        if (status == 101 or stream) and self.target[1] is not None:
            # a WebSocket or event stream keeps its Space awake while open, however quiet
            down.stream_opened(self.target[1])
            if status == 101:  # counted as it starts: it has no end that a latency could measure
                down.relay.metrics.answered(self.target[1], 101, 0, None)
        if exchange.head_only and not interim:
            # llhttp cannot be told that a HEAD answer has no body: end it here, parse the next anew
            self._status = -1
            self.exchange = None
            self._flush()
            down.finished(exchange, self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.exchange is None:
            return
        self.exchange.nbytes += len(body)
        self._body.append(body)

    def _flush(self, last: bytes = b"") -> None:
        """Send what is pending, then `last`; an event stream's many small chunks in one read
        leave as one chunk."""
        parts = [self._head] if self._head else []
        self._head = b""
        body = self._body
        if body:
            data = body[0] if len(body) == 1 else b"".join(body)
            body.clear()
            parts.append(b"%x\r\n%s\r\n" % (len(data), data) if self._rechunk else data)
        if last:
            parts.append(last)
        if len(parts) == 1:
            self.down.transport.write(parts[0])
        elif parts:
            self.down.transport.writelines(parts)  # uvloop: one writev

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if exchange is None or 100 <= self._status < 200:
            return  # an interim answer (100 Continue), a switch (101), or a HEAD answer already finished
        self._flush(b"0\r\n\r\n" if self._rechunk else b"")
        self.exchange = None
        self.down.finished(exchange, self.parser.should_keep_alive())
