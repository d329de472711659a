"""What the gateway knows about Spaces: a snapshot of the state store, at most a second old.

State-store reads run on one dedicated thread that owns its own `State` (a slow call must
never stall the event loop). Each Space row carries `address`, the (host, port) its requests go to, as the engine says
(`Engine.address`: a loopback port for Podman, the Space's Service for Kubernetes); it is
worked out on the state thread, once per serving version, since an engine may ask its API.

Traffic is recorded in memory and written in batches by
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

from spacehooks.push.addresses import host_label

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
        self._engine = None
        # (Space id, container, port) -> its address; only the state thread touches it
        self._addresses: dict[tuple, tuple[str, int] | None] = {}
        self._unaddressed: set[tuple] = set()

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
            rows = await self.run(lambda st: self._addressed(st.list_spaces(), everything=True))
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
            row = await self.run(lambda st: self._addressed([r for r in [st.get_space(space_id)] if r]))
            if not row:
                self._spaces.pop(space_id, None)
                return None
            record = await self.call("storage_of", space_id)
            self._spaces[space_id] = dict(row[0], storage=record["tier"] if record else None)
            return self._spaces[space_id]
        await self.refresh()
        return self._spaces.get(space_id)

    def _addressed(self, rows, everything: bool = False) -> list[dict]:
        """rows as dicts with their `address` (on the state thread). An engine that cannot say
        (its API away) leaves it None, asked again at the next refresh; the app path explains."""
        known, out = {}, []
        for row in rows:
            space = dict(row)
            key = (space["id"], space.get("container"), space.get("port"))
            if key not in self._addresses and space.get("port"):
                try:
                    if self._engine is None:
                        from spacehooks import engine
                        self._engine = engine.get(self.settings)
                    self._addresses[key] = self._engine.address(*key)
                except Exception as exc:  # noqa: BLE001 - one Space's address must not stop routing
                    if key not in self._unaddressed:  # once per version, not at every refresh
                        self._unaddressed.add(key)
                        log.warning("no address for %s: %s", space["id"], exc)
            space["address"] = known[key] = self._addresses.get(key)
            out.append(space)
        if everything:  # versions no longer listed are forgotten
            self._addresses = {k: v for k, v in self._addresses.items() if k in known}
        return out

    async def rollout_note(self, space_id: str) -> str | None:
        """What the engine says about the Space's last rollout (its page shows it); None when
        the engine cannot be asked."""
        def job(st):
            from spacehooks import engine
            return engine.get(self.settings).rollout_note(space_id)
        try:
            return await self.run(job)
        except Exception as exc:  # noqa: BLE001 - the page shows without it
            log.warning("no rollout note for %s: %s", space_id, exc)
            return None

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


def authority(address: tuple[str, int]) -> str:
    """host:port for a URL or a message ([v6]:port)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
