"""One process for a whole server: the gateway, the sleeper and (for `serve`) the build worker."""
from __future__ import annotations

import asyncio
import logging
import signal
import threading

from aiohttp import web

from spacehooks.errors import SpaceError
from spacehooks.gateway.app import make_app

log = logging.getLogger("spacehooks.gateway")


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise SpaceError(f"gateway.listen: {value!r} is not HOST:PORT", hint="write it like 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


def run(settings, listen: str | None = None, with_worker: bool = False, sleep: bool = True, echo=print) -> None:
    host, port = parse_listen(listen or settings["gateway.listen"])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop_worker = threading.Event()
    worker_thread = None
    if with_worker:
        from spacehooks import images
        from spacehooks.worker import Worker
        worker_thread = threading.Thread(target=Worker(settings, gc=images.gc).run, args=(stop_worker,), name="worker", daemon=True)
    asyncio.run(_serve(settings, host, port, worker_thread, stop_worker, sleep, echo))


async def _serve(settings, host, port, worker_thread, stop_worker, sleep, echo) -> None:
    # log streams (SSE) stay open for ever: give open connections 2 s on shutdown, not 60
    runner = web.AppRunner(make_app(settings, run_sleeper=sleep), access_log=None, handle_signals=False,
                           shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SpaceError(f"cannot listen on {host}:{port}: {exc.strerror}",
                         hint="stop what uses the port or set gateway.listen / --listen") from exc
    if worker_thread:
        worker_thread.start()
    domain = settings["gateway.domain"]
    echo(f"gateway listening on http://{host}:{port}  (gallery: {domain}, Spaces: <owner>-<name>.{domain})")
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    echo("stopping")
    stop_worker.set()
    await runner.cleanup()
    if worker_thread:
        await loop.run_in_executor(None, worker_thread.join, 60)
