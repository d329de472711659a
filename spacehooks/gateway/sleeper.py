"""Traffic-aware life cycle: idle Spaces go to sleep, the next request wakes them.

The runner does the container work (`runner.sleep`, `runner.wake`); they block on Podman, so
they run on worker threads, and concurrent requests to one sleeping Space share one wake.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from spacehooks import stages
from spacehooks.push import spaceconfig
from spacehooks.errors import SpaceError
from spacehooks.results import SleepTimeSet
from spacehooks.stages import ANSWERING
from spacehooks.gateway.registry import Registry

log = logging.getLogger("spacehooks.gateway")

SLEEPING = stages.SLEEPING  # the gateway's name for it, kept for its importers
# Stages in which a container answers on the Space's port.
FLUSH_SECONDS = 2.0
CHECK_SECONDS = 5.0
WAKE_TIMEOUT = 300.0


def is_static(space: dict) -> bool:
    return spaceconfig.is_static(space.get("config") or {})


def sleep_seconds(settings, space: dict) -> int:
    value = space.get("sleep_seconds")
    return settings["run.sleep_seconds"] if value is None else int(value)


class Sleeper:
    def __init__(self, settings, registry: Registry, runner=None):
        self.settings = settings
        self.registry = registry
        self._runner = runner
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lifecycle")
        self._wakes: dict[str, asyncio.Task] = {}
        self.wake_errors: dict[str, str] = {}
        self._first_seen: dict[str, float] = {}
        self.metrics = None  # the gateway's Metrics (make_app sets it): wakes and their seconds

    @property
    def runner(self):
        if self._runner is None:
            from spacehooks.run import runner
            self._runner = runner
        return self._runner

    # -- wake ----------------------------------------------------------------------------
    def wake(self, space_id: str) -> asyncio.Task:
        """Start (or join) the wake of a Space; the task's result is its port."""
        task = self._wakes.get(space_id)
        if task is None or task.done():
            self.wake_errors.pop(space_id, None)
            task = asyncio.get_running_loop().create_task(self._wake(space_id))
            self._wakes[space_id] = task
        return task

    async def _wake(self, space_id: str) -> int:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            port = await loop.run_in_executor(
                self._pool, self.runner.wake, self.settings, space_id, WAKE_TIMEOUT)
        except SpaceError as exc:
            self.wake_errors[space_id] = exc.format_message()
            self._count(space_id, None)
            raise
        except Exception as exc:  # the runner's bug must not take the gateway down
            log.exception("waking %s failed", space_id)
            self.wake_errors[space_id] = f"internal error while waking ({type(exc).__name__})"
            self._count(space_id, None)
            raise
        seconds = time.monotonic() - started
        self._count(space_id, seconds)
        log.info("woke %s in %.2fs on port %s", space_id, seconds, port)
        self.registry.touch(space_id)
        await self.registry.space(space_id, fresh=True)
        return port

    def _count(self, space_id: str, seconds: float | None) -> None:
        if self.metrics is not None:
            self.metrics.woke(space_id, seconds)

    # -- sleep ---------------------------------------------------------------------------
    def idle_for(self, space: dict, now: float) -> float:
        seen = self.registry.last_seen.get(space["id"])
        stored = space.get("last_request_at")
        if isinstance(stored, str):
            try:
                import datetime
                stored = datetime.datetime.fromisoformat(stored).timestamp()
            except ValueError:
                stored = None
        last = max([t for t in (seen, stored) if t is not None], default=None)
        if last is None:
            # Never visited: count from the moment this gateway first saw it running.
            last = self._first_seen.setdefault(space["id"], now)
        return now - last

    def due(self, space: dict, now: float) -> bool:
        seconds = sleep_seconds(self.settings, space)
        if seconds < 0 or is_static(space) or space.get("stage") not in ANSWERING:
            return False
        if self.registry.open_streams.get(space["id"], 0) > 0:
            return False
        if space["id"] in self._wakes and not self._wakes[space["id"]].done():
            return False
        return self.idle_for(space, now) >= seconds

    async def sleep_idle(self) -> list[str]:
        """Put every Space idle past its sleep time to sleep; returns their ids."""
        await self.registry.flush_touches()
        now = time.time()
        slept = []
        for space in await self.registry.spaces():
            if not self.due(space, now):
                continue
            log.info("%s idle for %.0fs: going to sleep", space["id"], self.idle_for(space, now))
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._pool, self.runner.sleep, self.settings, space["id"])
            except Exception:  # one Space failing to sleep must not stop the others
                log.exception("putting %s to sleep failed", space["id"])
                continue
            self._first_seen.pop(space["id"], None)
            slept.append(space["id"])
        if slept:
            from spacehooks.run import admission  # like the runner: loaded only once a Space sleeps
            try:  # the room they held may be what a Space waiting for capacity needs
                await asyncio.get_running_loop().run_in_executor(self._pool, admission.admit_waiting, self.settings)
            except Exception:
                log.exception("starting Spaces waiting for room failed")
            await self.registry.refresh(force=True)
        return slept

    async def loop(self, stop: asyncio.Event, check_seconds: float = CHECK_SECONDS) -> None:
        next_check = 0.0
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), FLUSH_SECONDS)
            except asyncio.TimeoutError:
                pass
            try:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + check_seconds
                    await self.sleep_idle()
                else:
                    await self.registry.flush_touches()
            except Exception:
                log.exception("sleeper pass failed")
        await self.registry.flush_touches()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def set_sleep_time(settings, space_id: str, seconds: int) -> SleepTimeSet:
    from spacehooks import state
    from spacehooks.queue import jobs as queue
    if seconds < -1 or seconds == 0:
        raise SpaceError(f"sleep time {seconds}: must be a number of seconds above 0, or -1 for never",
                         hint=f"e.g. `spacehooks sleep-time set {space_id} 3600`")
    st = state.open(settings)
    try:
        queue.require_space(st, space_id)
        st.update_space(space_id, sleep_seconds=seconds)
    finally:
        st.close()
    return SleepTimeSet(space_id, seconds)
