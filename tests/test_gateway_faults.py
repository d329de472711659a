"""The gateway under faults and hostile input: what users copy, requests it did not expect,
requests that must not be sent twice, slow and idle clients, a state store that is locked."""
import html
import json
import re
import socket
import time

import requests

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import GatewayUnderTest, free_port
from helpers import git, work_repo


def test_embed_snippet_escapes_readme_values(gw, upstream):
    gw.add_space("eve/embed", port=upstream.port, config={
        "title": "Embed", "sdk": "gradio", "base_path": '/x"><script>alert(1)</script><b a=\'1\'>'})
    page = requests.get(gw.url + "/spaces/eve/embed", timeout=10).text
    shown = re.search(r'<div class="embed mono" id="embed">(.*?)</div>', page, re.S).group(1)
    assert "<" not in shown  # no markup in the page itself
    copied = html.unescape(shown)  # what a person copies into their own page
    url = f"http://eve-embed.localhost:{gw.port}/x%22%3E%3Cscript%3Ealert(1)%3C/script%3E%3Cb%20a=%271%27%3E"
    assert copied == f'<iframe src="{url}" frameborder="0" width="850" height="450"></iframe>'
    runtime = requests.get(gw.url + "/api/spaces/eve/embed/runtime", timeout=10).json()
    assert runtime["url"] == url
    # a base_path of `//host` would make the app's link point at another site
    gw.state.update_space("eve/embed", config={"title": "Embed", "sdk": "gradio", "base_path": "//evil.example/x"})
    time.sleep(1.05)
    page = requests.get(gw.url + "/spaces/eve/embed", timeout=10).text
    assert f'href="http://eve-embed.localhost:{gw.port}/"' in page and "evil.example" not in page


def test_static_space_never_redirects_to_another_host(gw, tmp_path):
    work = work_repo(tmp_path / "site", {"README.md": "---\nsdk: static\n---\n", "index.html": "home\n",
                                         "x/index.html": "folder x\n", "evil.example/index.html": "folder\n"})
    commit = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    gw.add_space("alice/site", repo_path=str(work / ".git"), commit=commit, config={"sdk": "static"})
    for path, location in (("//x", "/x/"), ("/\\x", None), ("//x/..", None), ("//evil.example", "/evil.example/"),
                           ("/%2F%2Fevil.example", "/evil.example/"), ("/x", "/x/")):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {gw.host('alice/site')}\r\nConnection: close\r\n\r\n".encode())
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
        head = got.split(b"\r\n\r\n")[0].decode()
        found = re.search(r"\r\nLocation: ([^\r]*)", head + "\r", re.I)
        assert (found.group(1) if found else None) == location, (path, head)


class DroppingApp:
    """A container stand-in that reads each request whole and records it; it drops every POST
    and the first GET without a word (as an app that crashes on a request does), and answers
    the other GETs."""

    def __init__(self, loops):
        import asyncio
        self.loops, self.port, self.seen = loops, free_port(), []

        async def serve(reader, writer):
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    method = head.split(b" ", 1)[0].decode()
                    length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
                    if length:
                        await reader.readexactly(int(length.group(1)))
                    self.seen.append(method)
                    if method == "POST" or self.seen.count("GET") == 1:
                        break
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            writer.close()

        self.server = loops.run(asyncio.start_server(serve, "127.0.0.1", self.port))

    def stop(self):
        self.server.close()


def _post_dropped_once_and_get_retried(gw, loops):
    app = DroppingApp(loops)
    try:
        gw.add_space("alice/drop", port=app.port)
        url, host = gw.url + "/submit", {"Host": gw.host("alice/drop")}
        answer = requests.post(url, data=b"order one pizza", headers=host, timeout=30)
        assert app.seen == ["POST"]  # exactly once
        assert answer.status_code == 502
        assert "the request was not sent again" in answer.text
        # a GET the app dropped is sent again: the client never sees the failure
        answer = requests.get(url, headers=host, timeout=30)
        assert (answer.status_code, answer.text) == (200, "yes")
        assert app.seen == ["POST", "GET", "GET"]
    finally:
        app.stop()


def test_a_dropped_post_reaches_the_app_once_and_a_dropped_get_is_retried(gw, loops):
    _post_dropped_once_and_get_retried(gw, loops)


def test_without_the_relay_a_dropped_post_reaches_the_app_once_too(server, loops):
    gw = GatewayUnderTest(server, loops, **{"gateway.relay": False})
    try:
        _post_dropped_once_and_get_retried(gw, loops)
    finally:
        gw.stop()


def _swallowed_connections_get_an_answer(server, loops, monkeypatch, **settings):
    # A container that just exited or is being started again can swallow connection attempts
    # (bench/soak saw a request hang 10 s, and `podman kill` on this host makes connects hang
    # 3-8 s); here a listener whose accept queue is full drops every SYN the same way.
    from spacehooks.gateway import proxy, upstream
    monkeypatch.setattr(upstream, "CONNECT_SECONDS", 0.5, raising=False)
    monkeypatch.setattr(proxy, "CONNECT_SECONDS", 0.5, raising=False)
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    queued = socket.create_connection(hole.getsockname())  # the queue is full from here on
    probe = socket.socket()
    probe.settimeout(1)
    gw = GatewayUnderTest(server, loops, **settings)
    try:
        try:
            probe.connect(hole.getsockname())
            raise AssertionError("the full listener took a connection: this test would prove nothing")
        except TimeoutError:
            pass
        gw.add_space("alice/hole", port=hole.getsockname()[1], config={"sdk": "docker"})
        for method in ("GET", "POST"):
            # without a connect timeout the kernel retries SYNs for two minutes: the client's 60 s run out
            answer = requests.request(method, gw.url + "/", data=b"x" if method == "POST" else None,
                                      headers={"Host": gw.host("alice/hole")}, timeout=60)
            assert (answer.status_code, answer.text) == (502, "502: Space alice/hole is not answering\n"), method
    finally:
        gw.stop()
        for sock in (probe, queued, hole):
            sock.close()


def test_a_container_port_that_swallows_connections_gets_502_not_a_hang(server, loops, monkeypatch):
    _swallowed_connections_get_an_answer(server, loops, monkeypatch)


def test_without_the_relay_a_swallowed_connection_gets_502_too(server, loops, monkeypatch):
    _swallowed_connections_get_an_answer(server, loops, monkeypatch, **{"gateway.relay": False})


def test_a_held_write_lock_does_not_stall_requests_to_known_spaces(gw, upstream):
    import sqlite3
    import threading

    gw.add_space("alice/demo", port=upstream.port)
    host = {"Host": gw.host("alice/demo")}
    assert requests.get(gw.url + "/", headers=host, timeout=10).status_code == 200
    held, release = threading.Event(), threading.Event()

    def hold():
        # another member of the shared group, or a long write: SQLite's write lock for seconds
        conn = sqlite3.connect(str(gw.settings.db_path), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait(30)
        conn.execute("ROLLBACK")
        conn.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(10)
    outcomes = []
    try:
        deadline = time.monotonic() + 8  # several flushes of the traffic bookkeeping (every 2 s) and snapshots
        while time.monotonic() < deadline:
            for url, headers in ((gw.url + "/", host), (gw.url + "/sse", {**host, "Accept": "text/event-stream"}),
                                 (gw.url + "/api/spaces/alice/demo/runtime", {})):
                try:
                    outcomes.append(requests.get(url, headers=headers, timeout=4).status_code)
                except requests.RequestException as exc:
                    outcomes.append(repr(exc))
            time.sleep(0.1)
    finally:
        release.set()
        holder.join(10)
    assert len(outcomes) > 10 and set(outcomes) == {200}, [o for o in outcomes if o != 200][:3]
    # what was touched while the lock was held is written once it is free
    started = time.time() - 8
    deadline = time.monotonic() + 10
    while (gw.state.get_space("alice/demo")["last_request_at"] or 0) < started and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gw.state.get_space("alice/demo")["last_request_at"] >= started


def _read_all(sock) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_a_trickling_body_gets_408_and_a_kept_alive_idle_client_is_closed(server, loops, upstream):
    gw = GatewayUnderTest(server, loops, **{"gateway.body_timeout_seconds": 1, "gateway.idle_seconds": 2})
    try:
        gw.add_space("alice/demo", port=upstream.port)
        host = gw.host("alice/demo")
        with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as sock:
            sock.sendall(f"POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n".encode())
            got = b""
            for _ in range(40):  # one byte every 0.25 s: far too slow for 100 bytes in 1 s
                try:
                    sock.sendall(b"x")
                except OSError:
                    break
                time.sleep(0.25)
            got = _read_all(sock)
        assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert got.endswith(b"\r\n\r\n408: the request body did not arrive within 1 s\n")
        # a body that arrives in time is fine; then the connection stays open while idle ...
        with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as sock:
            sock.sendall(f"POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nhe".encode())
            time.sleep(0.3)
            sock.sendall(b"llo")
            got = b""
            while not got.endswith(b"hello"):
                got += sock.recv(65536)
            assert got.startswith(b"HTTP/1.1 200 OK")
            idle_since = time.monotonic()
            # ... up to gateway.idle_seconds, then the gateway closes it
            assert _read_all(sock) == b""
            assert time.monotonic() - idle_since > 1.5
    finally:
        gw.stop()


def test_when_connections_run_out_idle_ones_make_room_and_busy_ones_mean_503(server, loops, upstream):
    gw = GatewayUnderTest(server, loops, **{"gateway.max_connections": 10})
    socks = []
    try:
        gw.add_space("alice/demo", port=upstream.port)
        get = f"GET / HTTP/1.1\r\nHost: {gw.host('alice/demo')}\r\n\r\n".encode()
        for _ in range(30):  # idle kept-alive clients: the oldest make room for the new
            sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            sock.sendall(get)
            got = b""
            while not got.endswith(b"hello from v1\n"):
                got += sock.recv(65536)
            socks.append(sock)
        assert len(gw.listening.relay.connections) == 10
        for sock in socks[:20]:
            assert _read_all(sock) == b""  # closed for the newer ones
        for sock in socks:
            sock.close()
        socks.clear()
        time.sleep(0.5)
        for _ in range(10):  # busy: each in the middle of a request head
            sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x")
            socks.append(sock)
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(get)
            got = _read_all(sock)
        assert got.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and b"\r\nRetry-After: 1\r\n" in got
        assert got.endswith(b"\r\n\r\n503: the gateway has too many open connections; try again in a moment\n")
    finally:
        for sock in socks:
            sock.close()
        gw.stop()


def test_serve_raises_its_open_file_limit_and_idle_clients_never_exhaust_it(server, upstream):
    import resource
    import subprocess

    from spacehooks import config, state

    port = free_port()
    server.configure(**{"gateway.listen": f"127.0.0.1:{port}"})
    st = state.open(config.load(server.config, server.home))
    st.ensure_space("alice/demo", "/nonexistent")
    st.update_space("alice/demo", stage="RUNNING", port=upstream.port)
    st.close()

    def low_limit():  # an instance with a low soft limit, and a hard one not much higher
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 400))

    proc = subprocess.Popen(["spacehooks", "gateway", "--no-sleep"], env=server.env(), preexec_fn=low_limit,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    socks = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the gateway did not start"
                time.sleep(0.2)
        limits = open(f"/proc/{proc.pid}/limits").read()
        assert re.search(r"Max open files\s+400\s+400\s", limits), limits
        get = b"GET / HTTP/1.1\r\nHost: alice-demo.localhost\r\n\r\n"
        for i in range(400):  # more idle kept-alive clients than descriptors
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(get)
            got = b""
            while not got.endswith(b"hello from v1\n"):
                chunk = sock.recv(65536)
                assert chunk, f"connection {i} closed without an answer"
                got += chunk
            socks.append(sock)
        answer = requests.get(f"http://127.0.0.1:{port}/", headers={"Host": "alice-demo.localhost"}, timeout=10)
        assert answer.text == "hello from v1\n"
    finally:
        for sock in socks:
            sock.close()
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "Too many open files" not in output, output[-2000:]


def _absolute_form(gw, upstream):
    gw.add_space("alice/demo", port=upstream.port)
    gw.add_space("bob/other", port=upstream.port, stage="BUILDING")
    host = gw.host("alice/demo")
    results = []
    for target, header in ((f"http://{host}:{gw.port}/headers?x=1", "bob-other.localhost"),
                           (f"HTTP://{host.upper()}/headers", ""),
                           (f"http://{host}", "")):
        head = f"GET {target} HTTP/1.1\r\n" + (f"Host: {header}\r\n" if header else "Host: bob-other.localhost\r\n")
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall((head + "Connection: close\r\n\r\n").encode())
            results.append(_read_all(sock))
    return host, results


def test_absolute_form_targets_are_routed_by_their_authority(gw, upstream):
    # RFC 9112 3.2.2: the target's authority is the host, whatever the Host header says
    host, (first, second, third) = _absolute_form(gw, upstream)
    assert first.startswith(b"HTTP/1.1 200 OK"), first
    seen = json.loads(first.split(b"\r\n\r\n", 1)[1])
    assert seen["Host"] == f"{host}:{gw.port}"
    assert second.startswith(b"HTTP/1.1 200 OK"), second
    assert third.startswith(b"HTTP/1.1 200 OK") and third.endswith(b"hello from v1\n"), third
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(b"GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n")
        got = _read_all(sock)
    assert got.startswith(b"HTTP/1.1 400 Bad Request") and got.endswith(b"400: the request target ftp://x/ is not http(s)\n")


def test_absolute_form_targets_without_the_relay(server, loops, upstream):
    gw = GatewayUnderTest(server, loops, **{"gateway.relay": False})
    try:
        host, (first, second, third) = _absolute_form(gw, upstream)
        assert first.startswith(b"HTTP/1.1 200 OK"), first
        assert json.loads(first.split(b"\r\n\r\n", 1)[1])["Host"] == f"{host}:{gw.port}"
        assert second.startswith(b"HTTP/1.1 200 OK"), second
        assert third.startswith(b"HTTP/1.1 200 OK") and third.endswith(b"hello from v1\n"), third
    finally:
        gw.stop()
