"""The relay's answer to a GET or HEAD for a static Space: planned from the deploy folder's
manifest (`staticplan.plan`) and written straight to the client's socket, the file with
sendfile. Nothing of a file is held in memory but small ones (one read, one write): many slow
readers of a large file cost a file handle each, not its size.

It stands where an `Upstream` would for the downstream connection (same calls: begin, close,
pause, resume), so pipelining, keep-alive and closing work as for container Spaces.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from typing import TYPE_CHECKING

from spacehooks.gateway import staticplan, staticspace
from spacehooks.gateway.upstream import Exchange, Target

if TYPE_CHECKING:
    from spacehooks.gateway.downstream import Downstream

log = logging.getLogger("spacehooks.gateway")

SMALL = 64 * 1024  # files up to this are read and written with their head in one call
TURN_BYTES = 4 * 1024 * 1024  # one client gets at most this per turn of the loop: no reader starves the rest
REPLAYABLE = (errno.ENOENT, errno.ENOTDIR, errno.ESTALE)
WANTED = {b"if-none-match", b"range", b"if-range", b"accept-encoding"}


class StaticAnswer:
    """Answers for one client connection from one deployed site, one after the other."""

    def __init__(self, down: Downstream, target: Target):
        self.down = down
        self.target = target
        self.site: staticspace.Site = target[0]
        self.transport = down.transport
        self.sock = down.transport.get_extra_info("socket").fileno()
        self.loop = asyncio.get_running_loop()
        self.exchange: Exchange | None = None
        self.closed = False
        self.pending = b""  # head (and small body) bytes not yet written
        self.file = -1
        self.offset = self.left = 0
        self._dup: socket.socket | None = None  # the client's socket on a second descriptor
        self._pumping = False

    # -- what Downstream calls -------------------------------------------------------------
    def connect(self, exchange: Exchange) -> None:
        self.begin(exchange)

    def reusable(self, exchange: Exchange) -> bool:
        return not self.closed  # nothing goes to an app: any request may follow on it

    def pause(self, reason: str) -> None:
        pass  # writes go to the socket itself, only when it has room

    def resume(self, reason: str) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass  # a request body (the relay sends only bodiless GET/HEAD here)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._dup is not None:
            self.loop.remove_writer(self._dup.fileno())
            self._dup.close()
            self._dup = None
        self._close_file()

    # -- one answer ------------------------------------------------------------------------
    def begin(self, exchange: Exchange) -> None:
        if self.closed or self.down.closed:
            return
        self.exchange = exchange
        method, url, headers = exchange.request
        wanted = {}
        for name, value in headers:
            name = name.lower()
            if name in WANTED:
                wanted[name.decode()] = value.decode("latin-1")
        site = self.site
        answer = staticplan.plan(site, url.decode("utf-8", "replace"), wanted.get)
        body = answer.body
        if answer.file is not None and not exchange.head_only:
            name, offset, length = answer.file
            whole = answer.status == 200  # not a range: the cache holds whole files only
            body = site.small.get(name) if whole else None
            if body is None:
                try:
                    self.file = site.open(name)
                except OSError as exc:
                    self.close()
                    if exc.errno in REPLAYABLE:
                        # the folder was removed (gc after a newer deploy): the app reads the store anew
                        self.down.upstream_failed(self, exchange, f"static file {name}: {exc.strerror}")
                    else:
                        log.error("%s: static file %s: %s", site.space_id, name, exc.strerror)
                        self.down.refuse("503 Service Unavailable", "503: this file cannot be read now\n")
                    return
                if length <= SMALL:
                    body = os.pread(self.file, length, offset)
                    self._close_file()
                    if len(body) != length:  # changed under us: never send a wrong length
                        self.down.close()
                        return
                    if whole and length <= staticspace.SMALL_FILE \
                            and site.small_size + length <= staticspace.SMALL_KEPT:
                        site.small[name] = body
                        site.small_size += length
                else:
                    body = b""
                    self.offset, self.left = offset, length
        parts = [answer.head(), staticplan.date_line(), self.target[2]]
        if not exchange.keep_alive:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        if not exchange.head_only:
            parts.append(body)
        self.pending = b"".join(parts)
        exchange.answered = True
        exchange.replay = None
        exchange.status = answer.status
        exchange.nbytes = 0 if exchange.head_only else len(body) + self.left
        if self._pumping:  # a pipelined request answered as the previous one ends: no recursion
            self.loop.call_soon(self._pump)
        else:
            self._pump()

    def _pump(self) -> None:
        if self.closed or self.exchange is None:
            return
        self._pumping = True
        try:
            if self.pending:
                if self.transport.get_write_buffer_size():
                    return self._wait()  # the relay's own earlier writes go first
                if self.left:  # the head waits for the file's first bytes: one segment, not two
                    sent = self._socket().send(self.pending, socket.MSG_MORE)
                else:
                    sent = os.write(self.sock, self.pending)
                self.pending = self.pending[sent:]
                if self.pending:
                    return self._wait()
            turn = TURN_BYTES
            while self.left > 0:
                sent = os.sendfile(self.sock, self.file, self.offset, min(self.left, turn))
                if sent == 0:  # the file shrank under us: the client must see the answer cut
                    self.down.close()
                    return
                self.offset += sent
                self.left -= sent
                turn -= sent
                if turn <= 0 and self.left > 0:
                    self.loop.call_soon(self._pump)
                    return
        except BlockingIOError:
            return self._wait()
        except OSError:  # the client went away (EPIPE, ECONNRESET)
            self.down.close()
            return
        finally:
            self._pumping = False
        self._close_file()
        exchange, self.exchange = self.exchange, None
        self.down.finished(exchange, True)

    def _socket(self) -> socket.socket:
        # the transport owns the descriptor in the loop; a duplicate can be watched and sent on
        if self._dup is None:
            self._dup = socket.socket(fileno=os.dup(self.sock))
        return self._dup

    def _wait(self) -> None:
        self.loop.add_writer(self._socket().fileno(), self._writable)

    def _writable(self) -> None:
        self.loop.remove_writer(self._dup.fileno())
        self._pump()

    def _close_file(self) -> None:
        if self.file >= 0:
            os.close(self.file)
            self.file = -1
        self.left = 0
