"""The gateway's relay (the fast path) at the HTTP level: raw sockets on both sides, so framing,
keep-alive, pipelining and the fall-back to the app are seen byte for byte."""
import asyncio
import socket
import time

import h11
import pytest
import requests

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import Upstream


def exchange(port: int, data: bytes, until: bytes | None = None, timeout: float = 10) -> bytes:
    """Send raw bytes, read until `until` appears (or the gateway closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read(sock, until)


def read(sock, until: bytes | None = None) -> bytes:
    got = b""
    deadline = time.monotonic() + 10
    while until is None or until not in got:
        assert time.monotonic() < deadline, f"no {until!r} in {got!r}"
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def request(host: str, path: str = "/", method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


class RawUpstream:
    """A container stand-in that answers each request with scripted bytes, then maybe closes."""

    def __init__(self, loops, answers):
        self.loops, self.answers, self.port, self.connections = loops, list(answers), free_port(), 0

        async def serve(reader, writer):
            self.connections += 1
            try:
                while self.answers:
                    await reader.readuntil(b"\r\n\r\n")
                    answer, close = self.answers.pop(0)
                    writer.write(answer)
                    await writer.drain()
                    if close:
                        break
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            writer.close()

        self.server = loops.run(asyncio.start_server(serve, "127.0.0.1", self.port))

    def stop(self):
        self.server.close()


def answer_of(method: str, feed):
    """One answer read by h11 (a second, independent HTTP parser); `feed()` gives more bytes.
    Returns (status, body, (bytes after it, whether the connection ended))."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x"), ("Content-Length", "0")]))
    client.send(h11.EndOfMessage())
    status, body = None, b""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(feed())
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, body, client.trailing_data


def relayed(gw) -> int:
    return gw.listening.relay.direct


def test_plain_requests_take_the_relay_and_others_the_app(gw, upstream):
    gw.add_space("alice/demo", port=upstream.port)
    host = gw.host("alice/demo")
    before = relayed(gw)
    sent = time.time()
    assert requests.get(gw.url + "/", headers={"Host": host}, timeout=10).text == "hello from v1\n"
    assert relayed(gw) == before + 1
    # traffic on the fast path keeps the Space awake like any other
    assert gw.listening.relay.registry.last_seen["alice/demo"] >= sent
    # event streams and WebSockets take the relay too
    answer = requests.get(gw.url + "/sse", headers={"Host": host, "Accept": "text/event-stream"}, timeout=10)
    assert answer.text.count("data: tick") == 3
    assert relayed(gw) == before + 2
    # the gallery, unknown hosts and upgrades to other protocols go to the app behind the relay
    requests.get(gw.url + "/", timeout=10)
    requests.get(gw.url + "/", headers={"Host": "nobody-here.localhost"}, timeout=10)
    requests.get(gw.url + "/", headers={"Host": host, "Connection": "Upgrade", "Upgrade": "h2c"}, timeout=10)
    assert relayed(gw) == before + 2


def test_keep_alive_connection_follows_a_port_switch(gw, loops, upstream):
    gw.add_space("alice/demo", port=upstream.port)
    second = Upstream(loops, "v2")
    try:
        with requests.Session() as session:
            url, headers = gw.url + "/", {"Host": gw.host("alice/demo")}
            assert session.get(url, headers=headers, timeout=10).text == "hello from v1\n"
            gw.state.update_space("alice/demo", port=second.port)
            time.sleep(1.05)
            # the same client connection; the relay opens one to the new container
            assert session.get(url, headers=headers, timeout=10).text == "hello from v2\n"
    finally:
        second.stop()


def test_pipelined_requests_are_answered_in_order(gw, upstream):
    gw.add_space("alice/demo", port=upstream.port)
    host = gw.host("alice/demo")
    data = request(host) + request(host, "/headers") + request(host, extra="Connection: close\r\n")
    got = exchange(gw.port, data)
    assert got.count(b"HTTP/1.1 200 OK") == 3
    assert got.index(b"hello from v1") < got.index(b'"X-Forwarded-For"') < got.rindex(b"hello from v1")


def test_head_then_get_on_one_connection(gw, upstream):
    gw.add_space("alice/demo", port=upstream.port)
    host = gw.host("alice/demo")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(request(host, method="HEAD"))
        head = read(sock, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 14\r\n" in head
        assert head.endswith(b"\r\n\r\n")  # no body after a HEAD answer
        sock.sendall(request(host))
        assert read(sock, b"hello from v1\n").endswith(b"\r\n\r\nhello from v1\n")


def test_chunked_upload_and_expect_continue(gw, upstream):
    gw.add_space("alice/demo", port=upstream.port)
    parts = [b"first ", b"second ", b"third"]
    answer = requests.post(gw.url + "/echo", data=iter(parts), headers={"Host": gw.host("alice/demo")}, timeout=10)
    assert answer.content == b"first second third"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(request(gw.host("alice/demo"), "/echo", "POST",
                             "Content-Length: 5\r\nExpect: 100-continue\r\n"))
        assert read(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"hello")
        assert read(sock, b"\r\n\r\nhello").startswith(b"HTTP/1.1 200 OK")


def test_answer_ended_by_closing_is_rechunked_and_the_client_keeps_its_connection(gw, loops):
    raw = RawUpstream(loops, [(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", True),
                              (b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond", False)])
    try:
        gw.add_space("alice/raw", port=raw.port)
        with requests.Session() as session:
            first = session.get(gw.url + "/", headers={"Host": gw.host("alice/raw")}, timeout=10)
            assert (first.text, first.headers["Transfer-Encoding"]) == ("until the end", "chunked")
            assert session.get(gw.url + "/", headers={"Host": gw.host("alice/raw")}, timeout=10).text == "second"
        assert raw.connections == 2
    finally:
        raw.stop()


def two_requests_on_one_connection(gw, raw) -> bytes:
    """GET (answered `one`), a pause, GET asking to close; what came back after `one`."""
    gw.add_space("alice/raw", port=raw.port)
    host = gw.host("alice/raw")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(request(host))
        assert read(sock, b"one").endswith(b"\r\n\r\none")
        time.sleep(0.2)
        sock.sendall(request(host, extra="Connection: close\r\n"))
        return read(sock)


ONE, TWO = (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n" + word for word in (b"one", b"two"))


def test_container_that_drops_a_kept_alive_connection_costs_no_request(gw, loops):
    # the kept-alive connection takes the second request and closes without a word (a container
    # being retired does that); the relay sends the request again, through the app
    raw = RawUpstream(loops, [(ONE, False), (b"", True), (TWO, False)])
    try:
        assert two_requests_on_one_connection(gw, raw).endswith(b"\r\n\r\ntwo")
        assert raw.connections == 2
    finally:
        raw.stop()


def test_an_answer_nobody_asked_for_is_never_passed_on(gw, loops):
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra"
    raw = RawUpstream(loops, [(ONE + extra, False), (TWO, False)])
    try:
        rest = two_requests_on_one_connection(gw, raw)
        assert rest.endswith(b"\r\n\r\ntwo") and b"extra" not in rest
        assert raw.connections == 2  # the connection that spoke out of turn was dropped
    finally:
        raw.stop()


def test_answer_cut_short_reaches_the_client_cut(gw, loops):
    raw = RawUpstream(loops, [(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", True)])
    try:
        gw.add_space("alice/raw", port=raw.port)
        got = exchange(gw.port, request(gw.host("alice/raw")))
        assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"\r\n\r\nonly ten b")
    finally:
        raw.stop()


def test_bad_requests_are_refused_with_a_reason(gw, upstream):
    gw.add_space("alice/demo", port=upstream.port)
    got = exchange(gw.port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400 Bad Request") and b"400: the request could not be read" in got
    got = exchange(gw.port, b"GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: alice-demo.localhost\r\n\r\n")
    assert got.endswith(b"\r\n\r\n400: the request has more than one Host header\n")
    huge = request(gw.host("alice/demo"), extra="X-Big: " + "a" * 70000 + "\r\n")
    got = exchange(gw.port, huge)
    assert got.startswith(b"HTTP/1.1 431") and got.endswith(b"431: the request head is larger than 64 KiB\n")


def test_http_1_0_client_gets_its_answer_and_the_connection_closes(gw, upstream):
    gw.add_space("alice/demo", port=upstream.port)
    got = exchange(gw.port, f"GET /sse HTTP/1.0\r\nHost: {gw.host('alice/demo')}\r\n\r\n".encode())
    assert b"Transfer-Encoding" not in got and b"Connection: close" in got
    assert got.endswith(b"data: tick 2 from v1\n\n")


def test_a_request_head_that_never_ends_is_cut_off(gw, upstream, monkeypatch):
    from spacehooks.gateway import downstream
    monkeypatch.setattr(downstream, "HEAD_SECONDS", 0.5)
    gw.add_space("alice/demo", port=upstream.port)
    started = time.monotonic()
    got = exchange(gw.port, f"GET / HTTP/1.1\r\nHost: {gw.host('alice/demo')}\r\nX-Slow: ".encode())
    assert got.startswith(b"HTTP/1.1 408 Request Timeout") and got.endswith(b"408: no whole request head within 0.5 s\n")
    assert time.monotonic() - started < 8  # found by the sweep, every 5 s


def _pipeline(rng, host: str):
    """A few requests of random kinds; the last asks to close. Returns (bytes, [(method, expected)])."""
    out, expected = [], []
    count = rng.randint(1, 5)
    for i in range(count):
        kind = rng.choice(["get", "head", "post", "chunked", "headers"])
        close = "Connection: close\r\n" if i == count - 1 else ""
        if kind in ("get", "head"):
            method = kind.upper()
            out.append(f"{method} / HTTP/1.1\r\nHost: {host}\r\n{close}\r\n".encode())
            expected.append((method, b"" if method == "HEAD" else b"hello from v1\n"))
        elif kind == "headers":
            out.append(f"GET /headers HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 10.1.2.3\r\n{close}\r\n".encode())
            expected.append(("GET", b'"X-Forwarded-For": "10.1.2.3, 127.0.0.1"'))
        else:
            body = rng.randbytes(rng.choice([0, 1, 100, 5000, 70000]))
            head = f"POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n{close}"
            if kind == "post":
                out.append(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            else:
                chunks, rest = [], body
                while rest:
                    size = rng.randint(1, 9000)
                    chunks.append(b"%x\r\n%s\r\n" % (len(rest[:size]), rest[:size]))
                    rest = rest[size:]
                out.append(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + b"".join(chunks) + b"0\r\n\r\n")
            expected.append(("POST", body))
    return b"".join(out), expected


def test_random_pipelines_split_anywhere_get_every_answer_in_order(gw, upstream):
    import random

    gw.add_space("alice/demo", port=upstream.port)
    rng = random.Random(20261126)
    for _ in range(40):
        data, expected = _pipeline(rng, gw.host("alice/demo"))
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 6))))
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            for start, end in zip([0, *cuts], [*cuts, len(data)]):
                sock.sendall(data[start:end])
                time.sleep(rng.choice([0, 0, 0.002]))
            received = read(sock)  # to the end: the last request asked to close
        for method, want in expected:
            pending = [received]
            status, body, (received, _) = answer_of(
                method, lambda: pending.pop() if pending else pytest.fail(f"answer to {method} cut short"))
            assert status == 200
            assert want in body if want.startswith(b'"') else body == want
        assert received == b""


def _answers(rng):
    """Scripted container answers of every framing, with the body each must reach the client with."""
    script, bodies = [], []
    for _ in range(rng.randint(1, 6)):
        body = rng.randbytes(rng.choice([0, 1, 500, 20000]))
        kind = rng.choice(["length", "chunked", "eof", "204", "304"])
        if kind == "length":
            script.append((b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body), False))
        elif kind == "chunked":
            pieces = [body[i:i + 700] for i in range(0, len(body), 700)]
            encoded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
            script.append((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % encoded, False))
        elif kind == "eof":
            script.append((b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body, True))
        else:
            body = b""
            script.append((b"HTTP/1.1 %s Nothing\r\nETag: x\r\n\r\n" % kind.encode(), False))
        bodies.append((int(kind) if kind.isdigit() else 200, body))
    return script, bodies


def test_answers_of_every_framing_reach_the_client_whole(gw, loops):
    import random

    rng = random.Random(7)
    for _ in range(15):
        script, bodies = _answers(rng)
        raw = RawUpstream(loops, script)
        try:
            gw.add_space("alice/raw", port=raw.port)  # the same Space on this round's container
            host = gw.host("alice/raw")
            with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
                for i, (status, body) in enumerate(bodies):
                    last = i == len(bodies) - 1
                    sock.sendall(request(host, extra="Connection: close\r\n" if last else ""))
                    seen_status, got, (rest, closed) = answer_of("GET", lambda: sock.recv(65536))
                    assert (seen_status, got) == (status, body), f"answer {i} of {[s[0][:40] for s in script]}"
                    # kept open after every answer but the last (which may end with the connection)
                    assert rest == b"" and (last or not closed)
        finally:
            raw.stop()
