"""Prometheus metrics: counted where each answer is made, written out in the text exposition
format on the admins' own address (`metrics.listen`), never on the public one.

Each request is counted once, by whoever answered it: the relay for what it sends straight to
a container or from a static Space's files, the aiohttp app for everything it serves (the relay
hands those over uncounted). Counting costs a few integer additions on the event loop's thread,
so nothing is locked. What the store and Podman know (stages, restarts, builds, memory, CPU)
is read at scrape time.
"""
from __future__ import annotations

import asyncio
import logging
import math
from bisect import bisect_left

from aiohttp import web

from spacehooks import engine
from spacehooks.errors import SpaceError
from spacehooks.stages import STAGES
from spacehooks.state import FINAL

log = logging.getLogger("spacehooks.gateway")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WAKE_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BUILD_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
CODES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATS_TIMEOUT = 10.0  # seconds a scrape waits for Podman's numbers before it goes without them


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative: one addition per observation
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class Traffic:
    """Answers of one Space (or of the whole gateway): count by status class, latency, bytes."""
    __slots__ = ("codes", "latency", "bytes")

    def __init__(self):
        self.codes = [0] * 6
        self.latency = Histogram(LATENCY_BUCKETS)
        self.bytes = 0


class Metrics:
    def __init__(self):
        self.other = Traffic()  # answers of no Space (gallery, API, unknown hosts, refusals)
        self.spaces: dict[str, Traffic] = {}
        self.wakes: dict[str, Histogram] = {}
        self.wake_failures: dict[str, int] = {}
        self.sources: list = []  # (side, callable giving the number of open connections)

    def answered(self, space_id: str | None, status: int, nbytes: int, seconds: float | None) -> None:
        """One answer sent whole; `seconds` None: not a latency (a WebSocket or event stream)."""
        # the gateway's totals are summed at scrape time: one set of additions per answer
        if space_id is None:
            traffic = self.other
        else:
            traffic = self.spaces.get(space_id)
            if traffic is None:
                traffic = self.spaces[space_id] = Traffic()
        traffic.codes[status // 100 if 100 <= status < 600 else 0] += 1
        traffic.bytes += nbytes
        if seconds is not None:
            latency = traffic.latency
            latency.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
            latency.sum += seconds

    def total(self) -> Traffic:
        total = Traffic()
        for traffic in (self.other, *self.spaces.values()):
            total.codes = [a + b for a, b in zip(total.codes, traffic.codes)]
            total.latency.counts = [a + b for a, b in zip(total.latency.counts, traffic.latency.counts)]
            total.latency.sum += traffic.latency.sum
            total.bytes += traffic.bytes
        return total

    def woke(self, space_id: str, seconds: float | None) -> None:
        """A wake that took `seconds`, or that failed (None)."""
        if seconds is None:
            self.wake_failures[space_id] = self.wake_failures.get(space_id, 0) + 1
            return
        histogram = self.wakes.get(space_id)
        if histogram is None:
            histogram = self.wakes[space_id] = Histogram(WAKE_BUCKETS)
        histogram.observe(seconds)


# -- the exposition format ---------------------------------------------------------------------
def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}" if labels else ""


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Text:
    """Families written one after the other: HELP and TYPE once, then the samples."""

    def __init__(self):
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: dict, value: float) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(self, name: str, labels: dict, bounds, counts, total: float) -> None:
        running = 0
        for bound, count in zip((*bounds, math.inf), counts):
            running += count
            self.sample(f"{name}_bucket", {**labels, "le": _number(float(bound))}, running)
        self.sample(f"{name}_sum", labels, total)
        self.sample(f"{name}_count", labels, running)

    def render(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


def _traffic(out: Text, prefix: str, rows: list[tuple[dict, Traffic]]) -> None:
    out.family(f"{prefix}requests_total", "counter", "Answers sent, by HTTP status class.")
    for labels, traffic in rows:
        for index, count in enumerate(traffic.codes):
            if index or count:
                out.sample(f"{prefix}requests_total", {**labels, "code": CODES[index]}, count)
    out.family(f"{prefix}request_duration_seconds", "histogram",
               "Seconds from a request's first byte to its answer's last (WebSockets and event streams not included).")
    for labels, traffic in rows:
        out.histogram(f"{prefix}request_duration_seconds", labels, traffic.latency.bounds, traffic.latency.counts,
                      traffic.latency.sum)
    out.family(f"{prefix}response_bytes_total", "counter", "Bytes of answer bodies sent to clients.")
    for labels, traffic in rows:
        out.sample(f"{prefix}response_bytes_total", labels, traffic.bytes)


async def render(settings, metrics: Metrics, registry) -> bytes:
    out = Text()
    spaces = await registry.spaces()
    _traffic(out, "spacehooks_gateway_", [({}, metrics.total())])
    out.family("spacehooks_gateway_open_connections", "gauge", "Client connections open now, by the side holding them.")
    for side, count in metrics.sources:
        out.sample("spacehooks_gateway_open_connections", {"side": side}, count())
    _traffic(out, "spacehooks_", [({"space": k}, metrics.spaces[k]) for k in sorted(metrics.spaces)])

    out.family("spacehooks_space_stage", "gauge", "1 for the stage each Space is in, 0 for the others.")
    for space in spaces:
        for stage in STAGES:
            out.sample("spacehooks_space_stage", {"space": space["id"], "stage": stage},
                       int(space.get("stage") == stage))
    out.family("spacehooks_space_restarts_total", "counter", "Times supervision started a Space's exited app again.")
    for space in spaces:
        out.sample("spacehooks_space_restarts_total", {"space": space["id"]}, int(space.get("restarts") or 0))
    out.family("spacehooks_space_wake_duration_seconds", "histogram", "Seconds each wake from sleep took.")
    for space_id in sorted(metrics.wakes):
        wakes = metrics.wakes[space_id]
        out.histogram("spacehooks_space_wake_duration_seconds", {"space": space_id}, wakes.bounds, wakes.counts,
                      wakes.sum)
    out.family("spacehooks_space_wake_failures_total", "counter", "Wakes from sleep that failed.")
    for space_id in sorted(metrics.wake_failures):
        out.sample("spacehooks_space_wake_failures_total", {"space": space_id}, metrics.wake_failures[space_id])

    await _engine(out, settings, spaces)
    await _builds(out, registry)
    return out.render()


async def _engine(out: Text, settings, spaces: list[dict]) -> None:
    loop = asyncio.get_running_loop()
    try:
        stats = await asyncio.wait_for(loop.run_in_executor(None, lambda: engine.get(settings).stats()), STATS_TIMEOUT)
    except (SpaceError, asyncio.TimeoutError, ValueError) as exc:
        log.warning("metrics: no container stats from Podman: %s", getattr(exc, "message", exc) or "timed out")
        stats = None
    out.family("spacehooks_engine_up", "gauge", "1 when Podman answered this scrape's stats call.")
    out.sample("spacehooks_engine_up", {}, int(stats is not None))
    rows = [(space["id"], stats[space["container"]]) for space in spaces
            if stats and space.get("container") in stats]
    for name, key, kind, help_text in (
            ("spacehooks_space_memory_bytes", "memory_bytes", "gauge", "Memory the Space's container uses now."),
            ("spacehooks_space_memory_limit_bytes", "memory_limit_bytes", "gauge", "The container's memory limit."),
            ("spacehooks_space_cpu_seconds_total", "cpu_seconds", "counter",
             "CPU seconds the Space's current container has used.")):
        out.family(name, kind, help_text)
        for space_id, row in rows:
            out.sample(name, {"space": space_id}, getattr(row, key))


async def _builds(out: Text, registry) -> None:
    stats = await registry.call("build_stats", BUILD_BUCKETS)
    out.family("spacehooks_builds", "gauge", "Builds in the store, by status (queued and running ones included).")
    for status in sorted(stats["by_status"]):
        out.sample("spacehooks_builds", {"status": status}, stats["by_status"][status])
    out.family("spacehooks_build_duration_seconds", "histogram",
               "Seconds from a build's start to its end, by outcome (builds that started).")
    for outcome in FINAL:
        count, total, within = stats["durations"].get(outcome, (0, 0.0, (0,) * len(BUILD_BUCKETS)))
        counts = [w - p for w, p in zip((*within, count), (0, *within))]
        out.histogram("spacehooks_build_duration_seconds", {"outcome": outcome}, BUILD_BUCKETS, counts, float(total))
    last = sorted(stats["last"])
    out.family("spacehooks_space_last_build_duration_seconds", "gauge",
               "Seconds the Space's last finished build took, labelled with its outcome and id.")
    for space_id, build_id, status, started, finished in last:
        out.sample("spacehooks_space_last_build_duration_seconds",
                   {"space": space_id, "outcome": status, "build": build_id},
                   float(finished - started) if started and finished else 0.0)
    out.family("spacehooks_space_last_build_timestamp_seconds", "gauge", "When the Space's last build finished.")
    for space_id, build_id, status, _, finished in last:
        out.sample("spacehooks_space_last_build_timestamp_seconds",
                   {"space": space_id, "outcome": status, "build": build_id}, float(finished or 0))


def metrics_app(settings, metrics: Metrics, registry) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        body = await render(settings, metrics, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app
