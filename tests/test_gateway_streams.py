"""WebSockets and server-sent events through the gateway's relay to a docker Space the engine
really built and runs (tests/stream_app.py on the base image, stdlib only): aiohttp's WebSocket
client and event streams read as they arrive; either side leaving mid-stream; idle timeouts;
gateway.max_connections; a sleeping Space woken by a WebSocket."""
import asyncio
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
import requests

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import GatewayUnderTest
from helpers import push

README = "---\ntitle: Streams\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 20s\n---\n"
DOCKERFILE = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\nCOPY --chown=1000:1000 . .\n"
              'CMD ["python", "stream_app.py"]\n')
APP = (Path(__file__).parent / "stream_app.py").read_text()


@pytest.fixture
def streams(engine, monkeypatch):
    # on a loaded machine the relay's 0.4 s snapshot refresh can run late; then the relay hands
    # requests to the app (correct, but these tests check what the relay itself does)
    from spacehooks.gateway import registry
    monkeypatch.setattr(registry, "SNAPSHOT_TTL", 30)
    bare, work = engine.create("alice/streams", {"README.md": README, "Dockerfile": DOCKERFILE, "stream_app.py": APP})
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    assert engine.space("alice/streams")["stage"] == "RUNNING"
    return engine


def started(gw) -> GatewayUnderTest:
    """The gateway once its relay's first snapshot of the state store is read (before that, the
    relay hands every request to the app)."""
    deadline = time.monotonic() + 10
    while gw.listening.relay.registry.cached("alice-streams") is None:
        assert time.monotonic() < deadline, "the relay never read the state store"
        time.sleep(0.05)
    return gw


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def direct(gw) -> int:
    return gw.listening.relay.direct


def open_streams(gw) -> int:
    return int(requests.get(gw.url + "/streams", headers={"Host": gw.host("alice/streams")}, timeout=10).text)


def test_websocket_echo_and_event_stream_take_the_relay(streams, loops):
    gw = started(GatewayUnderTest(streams, loops, **{"gateway.stream_idle_seconds": 1.5, "gateway.idle_seconds": 1}))
    host = gw.host("alice/streams")

    async def websocket():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(gw.url + "/ws", headers={"Host": host}, max_msg_size=0) as ws:
                await ws.send_str("hello")
                assert (await ws.receive()).data == "hello"
                # larger than every buffer on the way: both directions wait for the other side
                big = bytes(range(256)) * 8192
                for _ in range(3):
                    await ws.send_bytes(big)
                for _ in range(3):
                    assert (await ws.receive()).data == big
                await ws.ping(b"p")
                await ws.send_str("after ping")
                assert (await ws.receive()).data == "after ping"

    async def events():
        arrived = []
        async with aiohttp.ClientSession() as session:
            # 6 events 0.4 s apart: 2.4 s, longer than both idle timeouts, cut by neither
            async with session.get(gw.url + "/sse?n=6&interval=0.4", headers={"Host": host}) as answer:
                assert answer.headers["Content-Type"] == "text/event-stream"
                assert "Content-Length" not in answer.headers
                async for line in answer.content:
                    if line.startswith(b"data: "):
                        arrived.append((time.monotonic(), line.split()[1]))
        return arrived

    async def idle_websocket():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(gw.url + "/ws", headers={"Host": host}, autoping=False) as ws:
                started = time.monotonic()
                message = await ws.receive(timeout=10)
                return message.type, time.monotonic() - started

    try:
        before = direct(gw)
        run(websocket())
        assert direct(gw) == before + 1  # the upgrade went straight to the container
        arrived = run(events())
        assert [n for _, n in arrived] == [b"0", b"1", b"2", b"3", b"4", b"5"]
        # passed on as they came, not when the stream ended
        assert arrived[-1][0] - arrived[0][0] > 1.5
        assert direct(gw) == before + 2
        kind, after = run(idle_websocket())
        assert kind in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert 1.4 <= after < 5  # gateway.stream_idle_seconds (checked once a second)
        assert open_streams(gw) == 0
    finally:
        gw.stop()


def test_either_side_leaving_mid_stream_ends_the_other(streams, loops):
    gw = started(GatewayUnderTest(streams, loops))
    host = gw.host("alice/streams")

    async def client_leaves():
        async with aiohttp.ClientSession() as session:
            answer = await session.get(gw.url + "/sse?n=0&interval=0.05", headers={"Host": host})
            await answer.content.readline()
            answer.connection.transport.abort()  # the browser tab closed
            answer.close()
            async with session.ws_connect(gw.url + "/ws", headers={"Host": host}) as ws:
                await ws.send_str("x")
                await ws.receive()
                ws._response.connection.transport.abort()

    async def app_dies():
        async with aiohttp.ClientSession() as session:
            async with session.get(gw.url + "/sse?n=3&interval=0.05&cut=1", headers={"Host": host}) as answer:
                got = b""
                with pytest.raises(aiohttp.ClientPayloadError):
                    async for chunk in answer.content.iter_any():
                        got += chunk
                # all it sent, and then the client's connection cut (not a clean end of stream)
                assert got.count(b"data: ") == 3
            async with session.ws_connect(gw.url + "/ws", headers={"Host": host}) as ws:
                await ws.send_str("close-now")
                message = await ws.receive(timeout=10)
                assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)

    try:
        before = direct(gw)
        run(client_leaves())
        deadline = time.monotonic() + 10
        while open_streams(gw) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert open_streams(gw) == 0  # the container's ends were closed too
        run(app_dies())
        assert direct(gw) >= before + 4
        assert gw.listening.relay.connections == set() or all(c.idle() for c in gw.listening.relay.connections)
    finally:
        gw.stop()


def test_idle_websockets_hold_their_place_under_max_connections(streams, loops):
    gw = started(GatewayUnderTest(streams, loops, **{"gateway.max_connections": 6}))
    host = gw.host("alice/streams")

    async def scenario():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            sockets = [await session.ws_connect(gw.url + "/ws", headers={"Host": host}) for _ in range(6)]
            await asyncio.sleep(1.5)  # past a sweep: an open WebSocket is not idle, nothing closes it
            async with session.get(gw.url + "/", headers={"Host": host}) as refused:
                assert refused.status == 503
                assert await refused.text() == "503: the gateway has too many open connections; try again in a moment\n"
            for i, ws in enumerate(sockets):
                await ws.send_str(f"still here {i}")
                assert (await ws.receive()).data == f"still here {i}"
            await sockets.pop().close()
            await asyncio.sleep(0.2)
            async with session.get(gw.url + "/", headers={"Host": host}) as answer:
                assert (answer.status, await answer.text()) == (200, "ok")
            for ws in sockets:
                await ws.close()

    try:
        run(scenario())
        assert gw.listening.relay.refused == 1
    finally:
        gw.stop()


def test_a_websocket_wakes_a_sleeping_space(streams, loops):
    cli = subprocess.run(["spacehooks", "sleep-time", "set", "alice/streams", "2"], env=streams.env(),
                         text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert cli.returncode == 0, cli.stdout
    gw = started(GatewayUnderTest(streams, loops, **{"gateway.sleep_check_seconds": 0.5}))
    host = gw.host("alice/streams")

    async def echo(quiet=0.0):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(gw.url + "/ws", headers={"Host": host}) as ws:
                await asyncio.sleep(quiet)
                await ws.send_str("wake up")
                return (await ws.receive(timeout=30)).data

    try:
        deadline = time.monotonic() + 30
        while streams.space("alice/streams")["port"] is not None and time.monotonic() < deadline:
            time.sleep(0.3)  # the stage changes first, then the container goes
        assert (streams.space("alice/streams")["stage"], streams.space("alice/streams")["port"]) == ("SLEEPING", None)
        assert run(echo()) == "wake up"  # the app behind the relay woke it and carried the first one
        assert streams.space("alice/streams")["stage"] == "RUNNING"
        while (gw.listening.relay.registry.cached("alice-streams") or {}).get("stage") != "RUNNING":
            assert time.monotonic() < deadline + 30, "the relay's snapshot never saw it running"
            time.sleep(0.1)
        before = direct(gw)
        # quiet for longer than its sleep time: an open WebSocket keeps its Space awake
        assert run(echo(quiet=4)) == "wake up"
        assert direct(gw) == before + 1  # awake: straight to the container
        assert streams.space("alice/streams")["stage"] == "RUNNING"
    finally:
        gw.stop()


def test_a_client_that_does_not_read_slows_the_stream_instead_of_filling_memory(streams, loops):
    import socket
    gw = started(GatewayUnderTest(streams, loops))
    relay = gw.listening.relay
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", gw.port))
        # an endless stream of 1 KiB events, as fast as the app can write them
        sock.sendall(f"GET /sse?n=0&interval=0&size=1024 HTTP/1.1\r\nHost: {gw.host('alice/streams')}\r\n\r\n".encode())
        try:
            time.sleep(3)

            async def held():
                conn, = [c for c in relay.connections if c.streaming]
                return conn.transport.get_write_buffer_size(), set(conn.upstream.paused)

            buffered, paused = loops.run(held())
            # the container's connection is not read while the client's buffer is full: at most
            # that buffer's limit and one read are held, not the seconds of events sent since
            assert "client" in paused
            assert buffered < 1024 * 1024
            got = b""
            while got.count(b"data: ") < 1000:  # it reads again: the stream flows again
                got += sock.recv(65536)
        finally:
            gw.stop()
