"""The gateway's front door: plain requests to a running Space go straight to its container.

A request through aiohttp's server and then its client costs about 0.2 ms of Python, which
capped the gateway at a seventh of nginx's throughput. Here llhttp (httptools) parses each
request and answer once, and bytes are copied between two sockets. Only requests whose route
is certain take this path: a Space that is running, known from a snapshot younger than a
second, with a plain request, a WebSocket upgrade (after the container's `101` the two sockets
are spliced both ways, each side read only while the other keeps up) or one whose answer is an
event stream (passed on as it arrives); and a bodiless GET or HEAD to a static Space whose
deploy folder is loaded, answered here from its files (`staticsend.py`). Everything else --
the gallery, the API, the first request after a static deploy, sleeping, building or unknown
Spaces, upgrades to other protocols, and any request whose container did not take it -- is
relayed to the aiohttp application on a private Unix socket, which knows how to wake, retry,
load and explain. `Relay.route` is the one place where every request is admitted.
"""
from __future__ import annotations

import asyncio
import logging
import resource

from spacehooks import stages
from spacehooks.gateway.app import space_headers, space_label
from spacehooks.gateway.downstream import Downstream
from spacehooks.gateway.metrics import Metrics
from spacehooks.gateway.registry import Registry
from spacehooks.gateway.sleeper import is_static
from spacehooks.gateway.staticspace import Sites
from spacehooks.gateway.upstream import Target
from spacehooks.stages import ANSWERING

log = logging.getLogger("spacehooks.gateway")

REFRESH_SECONDS = 0.4  # the snapshot is re-read this often, well inside the registry's SNAPSHOT_TTL


def max_connections(settings) -> int:
    configured = int(settings["gateway.max_connections"])
    if configured > 0:
        return configured
    # a request through the app holds up to four descriptors: client, container, and both
    # ends of the app's socket; keep some for the state store, logs and Podman. At most 16384
    # (a few KiB of buffers each) however high the limit.
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(16384, (soft - 128) // 4))


class Relay:
    def __init__(self, settings, registry: Registry, app_socket: str, sites: Sites | None = None,
                 metrics: Metrics | None = None):
        self.settings = settings
        self.registry = registry
        self.sites = sites
        self.app_target = Target((app_socket, None, b"", frozenset()))
        self.connections: set[Downstream] = set()
        self.metrics = metrics if metrics is not None else Metrics()
        self.max_connections = max_connections(settings)
        self.body_seconds = settings["gateway.body_timeout_seconds"]  # read once: per request otherwise
        self.refused = 0  # connections answered 503 because all were busy
        self.direct = 0  # requests sent straight to a container (for tests and curious admins)
        self.static = 0  # requests answered from a static Space's files
        self._headers: dict[str, tuple] = {}
        self._labels: dict[bytes, str | None] = {}  # Host value -> label, so each is read once
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Downstream(self), host, port, backlog=1024,
                                                reuse_address=True)
        self._sweeper = loop.create_task(self._sweep())

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _sweep(self) -> None:
        """Keep the snapshot fresh (so that a quiet Space's next request can take the fast path)
        and close idle client connections."""
        loop = asyncio.get_running_loop()
        next_idle_check = loop.time()
        while True:
            try:
                await self.registry.refresh(force=True)
            except Exception:  # the state store is busy or gone: the app path copes, try again
                log.exception("gateway relay: cannot read the state store")
            await asyncio.sleep(REFRESH_SECONDS)
            now = loop.time()
            if now >= next_idle_check:
                next_idle_check = now + 1
                for conn in list(self.connections):
                    conn.check_idle(now)

    def admit(self, conn: Downstream) -> bool:
        """Room for one more client connection? When full, the longest-idle kept-alive one is
        closed for it; when none is idle, no."""
        if len(self.connections) < self.max_connections:
            return True
        idle = [c for c in self.connections if c.idle()]
        if not idle:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning("gateway relay: %d connections open (gateway.max_connections), all busy: "
                            "new ones get 503 (%d so far)", len(self.connections), self.refused)
            return False
        min(idle, key=lambda c: c.last_active).close()
        return True

    def route(self, host: bytes | None, upgrade: bytes | None = None, method: bytes = b"GET",
              has_body: bool = False) -> Target:
        """Where a request goes: the one admission point of every request the gateway takes
        (plain, WebSocket upgrade, event stream, static file). `upgrade`: the protocol an
        upgrade asks for, None for a plain request."""
        if host is None or (upgrade is not None and upgrade != b"websocket"):
            return self.app_target
        try:
            label = self._labels[host]
        except KeyError:
            if len(self._labels) >= 4096:  # any client can send any Host: bounded
                self._labels.clear()
            label = self._labels[host] = space_label(self.settings, host.decode("latin-1"))
        if label is None:
            return self.app_target
        space = self.registry.cached(label)
        if space is None:  # unknown, or the snapshot is stale (the sweeper could not read the store)
            return self.app_target
        if space.get("private"):
            # the one admission point: every request to a private Space, of whatever kind, goes
            # to the app, which answers 404 to non-members (gateway/access.py)
            return self.app_target
        if is_static(space):
            # the app loads a newly deployed commit's files; from then on the relay answers
            site = self.sites.cached(space) if self.sites is not None else None
            if site is None or method not in (b"GET", b"HEAD") or has_body or upgrade is not None \
                    or space.get("stage") in stages.SHUT:
                return self.app_target
            self.static += 1
            return Target((site, space["id"], *self._space_headers(space)))
        address = space.get("address")  # the engine's: a loopback port, a Service (registry.py)
        if not address or space.get("stage") not in ANSWERING:
            return self.app_target
        self.direct += 1
        return Target((address, space["id"], *self._space_headers(space)))

    def _space_headers(self, space: dict) -> tuple[bytes, frozenset]:
        """The Space's own answer headers as lines, and the names they replace (cached per config)."""
        self.registry.touch(space["id"])
        config = space.get("config")
        cached = self._headers.get(space["id"])
        if cached is None or cached[0] is not config:
            set_headers, add_headers = space_headers(self.settings, space)
            lines = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in (*set_headers, *add_headers))
            cached = (config, lines, frozenset(k.lower().encode() for k, _ in set_headers))
            self._headers[space["id"]] = cached
        return cached[1], cached[2]
