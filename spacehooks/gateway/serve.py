"""One process for a whole server: the gateway, the sleeper and (for `serve`) the build worker."""
from __future__ import annotations

import asyncio
import logging
import os
import resource
import shutil
import signal
import tempfile
import threading

from aiohttp import web

from spacehooks.errors import SpaceError
from spacehooks.gateway.api import REGISTRY
from spacehooks.gateway.app import METRICS, SITES, make_app
from spacehooks.gateway.metrics import metrics_app

log = logging.getLogger("spacehooks.gateway")


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise SpaceError(f"gateway.listen: {value!r} is not HOST:PORT", hint="write it like 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


def raise_open_files() -> int:
    """Raise this process's soft open-file limit to its hard limit (every client connection
    costs descriptors; the soft limit is often 1024 while the hard one is far higher)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as fh:
                hard = int(fh.read())
        except (OSError, ValueError):
            return soft
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            soft = hard
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


def run(settings, listen: str | None = None, with_worker: bool = False, sleep: bool = True, echo=print) -> None:
    host, port = parse_listen(listen or settings["gateway.listen"])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    open_files = raise_open_files()
    log.info("open-file limit %d", open_files)
    stop_worker = threading.Event()
    worker_thread = None
    if with_worker:
        from spacehooks.admin import images
        from spacehooks.run.worker import Worker
        worker_thread = threading.Thread(target=Worker(settings, gc=images.gc).run, args=(stop_worker,), name="worker", daemon=True)
    try:
        import uvloop  # libuv's loop: the relay spends most of its time in the loop itself
        run_loop = uvloop.run
    except ImportError:
        run_loop = asyncio.run
    run_loop(_serve(settings, host, port, worker_thread, stop_worker, sleep, echo))


class Listening:
    """The gateway's listeners: the relay on the public address and the app on a private socket
    (or, with `gateway.relay: false`, the app alone on the public address)."""

    def __init__(self, runner: web.AppRunner, relay=None, private_dir: str | None = None):
        self.runner, self.relay, self.private_dir = runner, relay, private_dir
        self.metrics_runner: web.AppRunner | None = None

    async def close(self) -> None:
        if self.metrics_runner is not None:
            await self.metrics_runner.cleanup()
        if self.relay is not None:
            await self.relay.close()
        await self.runner.cleanup()
        if self.private_dir:
            shutil.rmtree(self.private_dir, ignore_errors=True)


async def listen(settings, app: web.Application, host: str, port: int, shutdown_timeout: float = 2) -> Listening:
    # log streams (SSE) stay open for ever: give open connections 2 s on shutdown, not 60
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout,
                           keepalive_timeout=settings["gateway.idle_seconds"])
    await runner.setup()
    listening = Listening(runner)
    metrics = app.get(METRICS)
    try:
        if not settings["gateway.relay"]:
            await web.TCPSite(runner, host, port, backlog=1024, reuse_address=True).start()
            if metrics is not None:
                metrics.sources = [("app", lambda: len(runner.server.connections))]
        else:
            from spacehooks.gateway.relay import Relay
            # a folder only this user can enter: whoever reaches the socket may write X-Forwarded-For
            listening.private_dir = tempfile.mkdtemp(prefix="spacehooks-gateway-")
            path = os.path.join(listening.private_dir, "app.sock")
            await web.UnixSite(runner, path).start()
            relay = listening.relay = Relay(settings, app[REGISTRY], path, app.get(SITES), metrics)
            await relay.start(host, port)
            # the app's connections come from the relay (one per client it hands over)
            relay.metrics.sources = [("relay", lambda: len(relay.connections)),
                                     ("app", lambda: len(runner.server.connections))]
    except OSError as exc:
        await listening.close()
        raise SpaceError(f"cannot listen on {host}:{port}: {exc.strerror}",
                         hint="stop what uses the port or set gateway.listen / --listen") from exc
    if settings["metrics.listen"] and metrics is not None:
        await _listen_metrics(settings, app, listening)
    return listening


async def _listen_metrics(settings, app: web.Application, listening: Listening) -> None:
    """The metrics endpoint on its own address: only who can reach that address reads it."""
    host, port = parse_listen(settings["metrics.listen"])
    runner = listening.metrics_runner = web.AppRunner(metrics_app(settings, app[METRICS], app[REGISTRY]),
                                                      access_log=None, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError as exc:
        await listening.close()
        raise SpaceError(f"cannot listen on {host}:{port} for metrics: {exc.strerror}",
                         hint="stop what uses the port or set metrics.listen") from exc


async def _serve(settings, host, port, worker_thread, stop_worker, sleep, echo) -> None:
    listening = await listen(settings, make_app(settings, run_sleeper=sleep), host, port)
    if worker_thread:
        worker_thread.start()
    domain = settings["gateway.domain"]
    echo(f"gateway listening on http://{host}:{port}  (gallery: {domain}, Spaces: <owner>-<name>.{domain})")
    if settings["metrics.listen"]:
        echo(f"metrics at http://{settings['metrics.listen']}/metrics")
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    echo("stopping")
    stop_worker.set()
    await listening.close()
    if worker_thread:
        await loop.run_in_executor(None, worker_thread.join, 60)
