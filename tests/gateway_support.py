"""A real gateway on a loopback port, a real state store, and small real upstream apps.

Imported by tests/test_gateway_*.py (`from gateway_support import *`).
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web
from playwright.sync_api import sync_playwright

from spacehooks import config as config_mod
from spacehooks import state as state_mod


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopThread:
    """An asyncio loop on its own thread, for servers the (synchronous) tests talk to."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def upstream_app(name: str) -> web.Application:
    """A small Space-like app: text, echo, headers, streaming, server-sent events, WebSocket."""
    async def index(request):
        return web.Response(text=f"hello from {name}\n")

    async def echo(request):
        body = await request.read()
        return web.Response(body=body, content_type=request.content_type)

    async def headers(request):
        return web.json_response({k: v for k, v in request.headers.items()})

    async def sse(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for i in range(3):
            await response.write(f"data: tick {i} from {name}\n\n".encode())
            await asyncio.sleep(0.3)
        return response

    async def ws(request):
        sock = web.WebSocketResponse(protocols=("chat",))
        await sock.prepare(request)
        async for message in sock:
            if message.type == web.WSMsgType.TEXT:
                await sock.send_str(f"{name} echo: {message.data}")
            elif message.type == web.WSMsgType.BINARY:
                await sock.send_bytes(message.data[::-1])
        return sock

    async def big(request):
        return web.Response(body=b"x" * (3 * 1024 * 1024))

    async def cookies(request):  # a hostile Space setting the gateway's sign-in cookie
        response = web.Response(text="cookies\n")
        response.headers.add("Set-Cookie", "theme=dark; Path=/")
        response.headers.add("Set-Cookie", "spacehooks_session=shk_planted; Domain=localhost; Path=/")
        return response

    app = web.Application(client_max_size=64 * 1024 ** 2)
    app.router.add_get("/", index)
    app.router.add_post("/echo", echo)
    app.router.add_get("/headers", headers)
    app.router.add_get("/sse", sse)
    app.router.add_get("/ws", ws)
    app.router.add_get("/big", big)
    app.router.add_get("/cookies", cookies)
    return app


class Upstream:
    def __init__(self, loops: LoopThread, name: str):
        self.loops, self.name, self.port = loops, name, free_port()
        self.runner = web.AppRunner(upstream_app(name))
        loops.run(self.runner.setup())
        loops.run(web.TCPSite(self.runner, "127.0.0.1", self.port).start())

    def stop(self):
        self.loops.run(self.runner.cleanup())


class GatewayUnderTest:
    def __init__(self, server, loops: LoopThread, runner=None, **settings):
        self.port = free_port()
        server.configure(**{"gateway.public_url": f"http://{{host}}:{self.port}",
                            "gateway.listen": f"127.0.0.1:{self.port}", **settings})
        self.settings = config_mod.load(server.config, server.home)
        self.state = state_mod.open(self.settings)
        self.url = f"http://127.0.0.1:{self.port}"
        self.loops = loops
        from spacehooks.gateway.app import make_app
        from spacehooks.gateway.registry import Registry
        from spacehooks.gateway.sleeper import Sleeper
        registry = Registry(self.settings)
        self.sleeper = Sleeper(self.settings, registry, runner=runner)
        self.app = make_app(self.settings, registry, self.sleeper)
        from spacehooks.gateway import serve
        # open event streams from the browser would hold the shutdown for its full timeout
        self.listening = loops.run(serve.listen(self.settings, self.app, "127.0.0.1", self.port, shutdown_timeout=1))

    def host(self, space_id: str) -> str:
        from spacehooks.gateway.registry import host_label
        return f"{host_label(space_id)}.{self.settings['gateway.domain']}"

    def space_url(self, space_id: str) -> str:
        return f"http://{self.host(space_id)}:{self.port}"

    def add_space(self, space_id: str, repo_path="/nonexistent", **fields):
        self.state.ensure_space(space_id, repo_path)
        fields.setdefault("stage", "RUNNING")
        self.state.update_space(space_id, **fields)
        time.sleep(1.05)  # past the gateway's one-second snapshot

    def stop(self):
        self.loops.run(self.listening.close())
        self.state.close()


@pytest.fixture
def loops():
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
def upstream(loops):
    up = Upstream(loops, "v1")
    yield up
    up.stop()


@pytest.fixture
def gw(server, loops):
    g = GatewayUnderTest(server, loops)
    yield g
    g.stop()


def sse_events(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


def log_lines(text: str) -> list[str]:
    return [json.loads(e)["data"] for e in sse_events(text)]


SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    dialogs = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    yield pg
    context.close()


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)
