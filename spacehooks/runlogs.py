"""The app's output copied into the Space's run log (SPACEHOOKS_HOME/logs/run/<id>.log),
rotated by size: what the gateway's log stream and `spacehooks logs` read.

The worker process keeps one follower thread per serving container. After a restart of
the worker a follower asks Podman only for output newer than the run log's last change,
so lines are neither lost nor repeated (to within Podman's timestamp resolution).
"""
from __future__ import annotations

import logging
import threading
import time

from spacehooks import engine, logs, stages
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError

SYNC_EVERY = 2.0  # seconds between looks for containers without a follower
log = logging.getLogger("spacehooks.runlogs")


class RunLogPump:
    def __init__(self, settings):
        self.settings = settings
        self._followers: dict[str, threading.Thread] = {}
        self._last_sync = 0.0
        self.outage = engine.Outage(log, "copying the apps' output")

    def sync(self, st: state_mod.State) -> None:
        """Start a follower for every serving container that has none (cheap when called often)."""
        if time.monotonic() - self._last_sync < SYNC_EVERY:
            return
        self._last_sync = time.monotonic()
        self._followers = {name: t for name, t in self._followers.items() if t.is_alive()}
        wanted = [s for s in st.list_spaces()
                  if s.get("container") and s["stage"] in stages.STARTED and s["container"] not in self._followers]
        if not wanted or not self.outage.due():
            return
        if not engine.get(self.settings).reachable():  # followers ended: is the service gone?
            self.outage.down("not reachable")
            return
        self.outage.up()
        for space in wanted:
            name = space["container"]
            thread = threading.Thread(target=self._follow, args=(space["id"], name, st.run_log_path(space["id"])),
                                      name=f"runlog-{name}", daemon=True)
            self._followers[name] = thread
            thread.start()

    def _follow(self, space_id: str, name: str, path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            since = path.stat().st_mtime
        except FileNotFoundError:
            since = 0
        max_bytes = int(self.settings["logs.max_bytes"])
        fh = path.open("ab")
        try:
            for chunk in engine.get(self.settings).follow_logs(name, since):
                fh.write(chunk)
                fh.flush()
                if max_bytes > 0 and fh.tell() >= max_bytes:
                    fh.close()
                    logs.rotate(path, self.settings)
                    fh = path.open("ab")
        except SpaceError as exc:  # the service is down: sync backs off, no traceback
            log.warning("following the output of %s (%s) stopped: %s", name, space_id, exc.message)
        except Exception:  # a follower must never take the worker down; the next sync retries
            log.exception("following the output of %s (%s) failed", name, space_id)
        finally:
            fh.close()
