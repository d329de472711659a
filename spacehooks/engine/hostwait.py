"""Waiting for a version that runs on this host (the Podman engine's, a test's fake): it is up
when it answers HTTP on its loopback port; the engine's state says when it crashed or was
killed for memory first. Engines whose versions run elsewhere (a cluster) wait their own way.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from spacehooks import stages
from spacehooks.engine.spec import Readiness

if TYPE_CHECKING:
    from spacehooks.engine.base import Engine

LOG_TAIL = 30
POLL = 0.02  # a wake (and a redeploy) waits on this loop: one connect() to the app's port each
STATE_POLL = 0.25  # how soon a crash or an OOM kill while starting is seen: one engine inspect each
OOM_REASON = "the app was killed for using more memory than its limit (memory limit reached)"


def oom_kills() -> int:
    """The kernel's count of OOM kills: runc on cgroup v1 does not always set OOMKilled."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def log_tail(eng: "Engine", name: str) -> str:
    """`log tail:` and the app's last lines."""
    text = eng.log_tail(name, LOG_TAIL).rstrip()
    return "log tail:\n" + text if text else "log tail: (empty)"


def with_log_tail(eng: "Engine", name: str, reason: str) -> str:
    return f"{reason}\n{log_tail(eng, name)}"


def answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the app is up
    except (OSError, ValueError):
        return False


def wait(eng: "Engine", name: str, port: int, timeout: float,
         answering: Callable[[int], bool] = answers) -> Readiness:
    deadline = time.monotonic() + timeout
    oom_before = oom_kills()
    inspect_at = 0.0
    while True:
        if time.monotonic() < inspect_at:  # an inspect takes longer than a connect()
            if answering(port):
                return Readiness(True)
            time.sleep(POLL)
            continue
        inspect_at = time.monotonic() + STATE_POLL
        state = eng.state(name)
        if state is None:
            return Readiness(False, stages.RUNTIME_ERROR, f"the container {name} was removed while the app started")
        if state.oom_killed:
            return Readiness(False, stages.RUNTIME_ERROR, with_log_tail(eng, name, OOM_REASON))
        # a crash shows as "exited" (restart policy "no": supervise.py restarts deployed apps)
        if state.status in ("exited", "stopped"):
            code = state.exit_code
            reason = (OOM_REASON if code == 137 and (state.oom_killed or oom_kills() > oom_before)
                      else f"the app exited with code {code}")
            return Readiness(False, stages.RUNTIME_ERROR, with_log_tail(eng, name, reason))
        if answering(port):
            return Readiness(True)
        if time.monotonic() > deadline:
            return Readiness(False, stages.RUNTIME_ERROR, with_log_tail(
                eng, name, f"the app did not answer HTTP on its port within {timeout:.0f}s (startup_duration_timeout)"))
        time.sleep(POLL)
