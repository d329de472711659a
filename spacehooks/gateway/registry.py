"""What the gateway knows about Spaces: a snapshot of the state store, at most a second old.

State-store reads run on one dedicated thread that owns its own `State` (a slow call must
never stall the event loop). Traffic is recorded in memory and written in batches by
`flush_touches` on a second thread with a connection of its own: a write waits for SQLite's
write lock (another process may hold it for seconds), and reads must not queue behind it, or
routing would wait too.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from spacehooks.addresses import host_label

log = logging.getLogger("spacehooks.gateway")

# The runner switches a Space's port in the state store; the gateway must see it within 1 s.
SNAPSHOT_TTL = 1.0


class Registry:
    def __init__(self, settings, open_state: Callable[[Any], Any] | None = None):
        self.settings = settings
        self._open_state = open_state
        self._state = None
        self._writer_state = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-write")
        self._flushing: asyncio.Future | None = None
        self._spaces: dict[str, dict] = {}
        self._by_label: dict[str, str] = {}
        self._clashes: set[tuple[str, str]] = set()  # (label, Space refused it) already logged
        self._loaded_at = 0.0
        self._refreshing: asyncio.Future | None = None
        self.touched: set[str] = set()
        self.last_seen: dict[str, float] = {}
        self.open_streams: dict[str, int] = {}

    # -- the state thread --------------------------------------------------------------
    def _state_obj(self):
        if self._state is None:
            self._state = (self._open_state or _default_open)(self.settings)
        return self._state

    async def call(self, method: str, *args, **kw):
        def job():
            return getattr(self._state_obj(), method)(*args, **kw)
        return await asyncio.get_running_loop().run_in_executor(self._thread, job)

    async def run(self, function: Callable, *args, **kw):
        """function(state, *args) on the state thread (accounts.identify, accounts.audit)."""
        def job():
            return function(self._state_obj(), *args, **kw)
        return await asyncio.get_running_loop().run_in_executor(self._thread, job)

    def close(self) -> None:
        for pool, attr in ((self._thread, "_state"), (self._writer, "_writer_state")):
            def job(attr=attr):
                state = getattr(self, attr)
                if state is not None and hasattr(state, "close"):
                    state.close()
            pool.submit(job).result()
            pool.shutdown(wait=True)

    # -- snapshot ------------------------------------------------------------------------
    async def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at < SNAPSHOT_TTL:
            return
        # One reload at a time; concurrent requests wait for the same one.
        if self._refreshing is not None:
            await asyncio.shield(self._refreshing)
            if not force:
                return
        loop = asyncio.get_running_loop()
        self._refreshing = loop.create_future()
        try:
            rows = await self.call("list_spaces")
            tiers = {r["space_id"]: r["tier"] for r in await self.call("storage_all")}
            spaces = {row["id"]: dict(row, storage=tiers.get(row["id"])) for row in rows}  # the runtime's storage
            by_label: dict[str, str] = {}
            # the oldest Space keeps its address: a newer one sharing the label never takes it
            for space_id in sorted(spaces, key=lambda k: (spaces[k].get("created_at") or 0, k)):
                label = host_label(space_id)
                if label in by_label:
                    if (label, space_id) not in self._clashes:  # once, not at every refresh
                        self._clashes.add((label, space_id))
                        log.warning("host %s.%s belongs to %s; %s has the same address and is not served there",
                                    label, self.settings["gateway.domain"], by_label[label], space_id)
                    continue
                by_label[label] = space_id
            self._spaces, self._by_label = spaces, by_label
            self._loaded_at = time.monotonic()
        finally:
            self._refreshing.set_result(None)
            self._refreshing = None

    async def space(self, space_id: str, fresh: bool = False) -> dict | None:
        if fresh:
            row = await self.call("get_space", space_id)
            if row is None:
                self._spaces.pop(space_id, None)
                return None
            record = await self.call("storage_of", space_id)
            self._spaces[space_id] = dict(row, storage=record["tier"] if record else None)
            return self._spaces[space_id]
        await self.refresh()
        return self._spaces.get(space_id)

    async def spaces(self) -> list[dict]:
        await self.refresh()
        return [self._spaces[k] for k in sorted(self._spaces)]

    async def resolve_host(self, label: str) -> str | None:
        """The Space id served at `<label>.<domain>`; `owner-name` is ambiguous, so ask the store."""
        await self.refresh()
        space_id = self._by_label.get(label)
        if space_id is None and time.monotonic() - self._loaded_at > 0.2:
            await self.refresh(force=True)
            space_id = self._by_label.get(label)
        return space_id

    def cached(self, label: str) -> dict | None:
        """The Space at `<label>.<domain>` if the snapshot is fresh and knows it; else None
        (then `resolve_host` must decide)."""
        if time.monotonic() - self._loaded_at >= SNAPSHOT_TTL:
            return None
        space_id = self._by_label.get(label)
        return self._spaces.get(space_id) if space_id is not None else None

    # -- traffic -------------------------------------------------------------------------
    def touch(self, space_id: str) -> None:
        self.touched.add(space_id)
        self.last_seen[space_id] = time.time()

    def stream_opened(self, space_id: str) -> None:
        self.open_streams[space_id] = self.open_streams.get(space_id, 0) + 1
        self.touch(space_id)

    def stream_closed(self, space_id: str) -> None:
        self.open_streams[space_id] = self.open_streams.get(space_id, 1) - 1
        self.touch(space_id)

    async def flush_touches(self) -> None:
        """Write what was touched since the last flush. Returns at once while an earlier flush
        still waits for the write lock; what is touched meanwhile goes with a later one."""
        if self._flushing is not None and not self._flushing.done():
            return
        # A WebSocket or event stream held open is traffic too.
        batch = self.touched | {k for k, n in self.open_streams.items() if n > 0}
        self.touched = set()
        if not batch:
            return

        def job():
            if self._writer_state is None:
                self._writer_state = (self._open_state or _default_open)(self.settings)
            for space_id in batch:
                self._writer_state.touch(space_id)
        self._flushing = asyncio.get_running_loop().run_in_executor(self._writer, job)
        try:
            await asyncio.shield(self._flushing)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.touched |= batch  # the store is locked or away: try again with the next batch
            raise


def _default_open(settings):
    from spacehooks import state
    return state.open(settings)
