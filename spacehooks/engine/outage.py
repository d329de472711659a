"""Backoff while the engine's service is down: one log line when it goes and one when it is
back, instead of a traceback per container per pass."""
from __future__ import annotations

import time


class Outage:
    FIRST, LONGEST = 2.0, 60.0

    def __init__(self, log, what: str):
        self.log, self.what = log, what
        self.since: float | None = None
        self._wait, self._next = 0.0, 0.0

    def due(self) -> bool:
        return self.since is None or time.monotonic() >= self._next

    def down(self, reason: str) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("Podman service down (%s): %s paused, retrying with backoff", reason, self.what)
        self._wait = min(self.LONGEST, max(self.FIRST, self._wait * 2))
        self._next = time.monotonic() + self._wait

    def up(self) -> None:
        if self.since is not None:
            self.log.warning("Podman service back after %.0fs: %s resumed", time.monotonic() - self.since, self.what)
        self.since, self._wait = None, 0.0
