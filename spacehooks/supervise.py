"""Supervision of deployed apps: an app that exits, or is killed for memory, is started again
after a pause that doubles each time; after `run.crash_limit` exits within
`run.crash_window_seconds` it stays down and the Space shows RUNTIME_ERROR with the reason and
the app's last lines.

Containers are created with Podman's restart policy "no": Podman's own restarts ran out
silently, leaving the Space RUNNING with nothing behind its port. The worker's housekeeping
calls `Supervisor.check` every pass; it asks Podman at most once a second.
"""
from __future__ import annotations

import logging
import time

from spacehooks import engine, runner, stages
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError

CHECK_EVERY = 1.0  # seconds between looks at the containers (one Podman list call)
FIRST_PAUSE = 1.0  # before the first restart; doubled for each further exit in the window
MAX_PAUSE = 60.0
OOM_REASON = "the app was killed for using more memory than its limit (memory limit reached)"
log = logging.getLogger("spacehooks.supervise")


def exit_reason(code, oom: bool) -> str:
    return OOM_REASON if oom else f"the app exited with code {code}"


class Supervisor:
    def __init__(self, settings):
        self.settings = settings
        self._exits: dict[str, list[float]] = {}  # container -> times its exits were seen
        self._restart_at: dict[str, float] = {}  # container -> when to start it again
        self._last = 0.0
        self._oom_kills = runner._oom_kills()
        self._podman_down_since: float | None = None

    def check(self, st: state_mod.State) -> None:
        now = time.monotonic()
        if now - self._last < CHECK_EVERY:
            return
        self._last = now
        serving = {s["container"]: s for s in st.list_spaces()
                   if s.get("container") and s["stage"] in stages.ANSWERING}
        for name in set(self._exits) - set(serving):  # replaced, slept or stopped: forget it
            self._exits.pop(name, None)
            self._restart_at.pop(name, None)
        if not serving:
            return
        try:
            states = engine.get(self.settings).states(runner.LABEL)
        except SpaceError as exc:
            # the Podman service is away: say so once, look again later
            if self._podman_down_since is None:
                log.warning("supervision paused: %s", exc.message)
                self._podman_down_since = now
            self._last = now + 5
            return
        self._podman_down_since = None
        kills, self._oom_kills = self._oom_kills, runner._oom_kills()
        oom_seen = self._oom_kills > kills
        for name, space in serving.items():
            info = states.get(name)
            if info is None or info.running:
                # gone: restore's business; running: started again (by us, or by an admin)
                self._restart_at.pop(name, None)
                continue
            try:
                self._exited(st, space, name, info, oom_seen, now)
            except (SpaceError, engine.EngineError) as exc:
                log.warning("supervising %s: %s", space["id"], getattr(exc, "message", exc))

    def _exited(self, st, space: dict, name: str, info: engine.ContainerState, oom_seen: bool, now: float) -> None:
        due = self._restart_at.get(name)
        if due is not None:
            if now >= due and self._still_serving(st, space["id"], name):
                del self._restart_at[name]
                log.info("%s: starting %s again", space["id"], name)
                engine.get(self.settings).start(name)
                st.count_restart(space["id"])  # the gateway's metrics read it from the store
            return
        # runc on cgroup v1 does not always set OOMKilled: a SIGKILL while the kernel counted
        # an OOM kill is taken for one
        oom = info.oom_killed or (info.exit_code == 137 and oom_seen)
        reason = exit_reason(info.exit_code, oom)
        window = float(self.settings["run.crash_window_seconds"])
        exits = [t for t in self._exits.get(name, []) if now - t < window] + [now]
        self._exits[name] = exits
        limit = int(self.settings["run.crash_limit"])
        if not self._still_serving(st, space["id"], name):
            return
        if len(exits) >= limit:
            self._give_up(st, space, name, reason, len(exits), window)
            return
        pause = min(MAX_PAUSE, FIRST_PAUSE * 2 ** (len(exits) - 1))
        self._restart_at[name] = now + pause
        message = (f"{reason}; started again in {pause:g}s "
                   f"(exit {len(exits)} of {limit} allowed within {window:g}s)")
        log.warning("%s: %s", space["id"], message)
        st.update_space(space["id"], error=message)
        runner._append_run_log(self.settings, st, space["id"], message)

    def _give_up(self, st, space: dict, name: str, reason: str, count: int, window: float) -> None:
        error = f"{reason} ({count} exits within {window:g}s: not started again)\n" + runner.log_tail(self.settings, name)
        log.error("%s: RUNTIME_ERROR: %s", space["id"], error.splitlines()[0])
        stages.change(st, space["id"], stages.RUNTIME_ERROR, "crashed", error=error, port=None, container=None)
        st.retire(space["id"], name, time.time())  # removed by the next reap; its log tail is kept above
        runner._release_gpu(self.settings, space["id"])
        runner._append_run_log(self.settings, st, space["id"], "RUNTIME_ERROR: " + error.splitlines()[0])
        self._exits.pop(name, None)

    @staticmethod
    def _still_serving(st, space_id: str, name: str) -> bool:
        """The store may have moved on since the list was read (a redeploy, sleep, stop)."""
        fresh = st.get_space(space_id)
        return bool(fresh) and fresh.get("container") == name and fresh["stage"] in stages.ANSWERING
