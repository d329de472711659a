"""Container life cycle: blue-green replace, limits, env, secrets, sleep and wake.

A new container starts on a fresh loopback port beside the old one; only when it answers
HTTP does the Space's port/container switch in the state store (the gateway follows that
row), and the old container is removed after run.grace_seconds.
"""
from __future__ import annotations

import random
import re
import socket
import time

from spacehooks import engine, logs, stages
from spacehooks.build import staticsite
from spacehooks.engine import netfence
from spacehooks.push import spaceconfig
from spacehooks.run import runspec
from spacehooks.run import capacity
from spacehooks.engine import hostwait
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError
from spacehooks.run.runspec import LABEL, container_name, limits_for, space_host  # noqa: F401 - runner's interface

LOG_TAIL = hostwait.LOG_TAIL
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class StartFailed(Exception):
    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


def duration_seconds(text: str | None, default: float = 1800) -> float:
    if not text:
        return default
    return sum(int(n) * DURATION_UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", str(text))) or default


def free_port(settings, st: state_mod.State) -> int:
    low, high = settings["run.port_range"]
    used = {s["port"] for s in st.list_spaces() if s["port"]}
    candidates = [p for p in range(low, high + 1) if p not in used]
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SpaceError(f"no free port in run.port_range {low}-{high}", hint="widen run.port_range")


def _release_gpu(settings, space_id: str) -> None:
    if not engine.get(settings).host_fences:
        return  # none was allocated: the cluster's scheduler placed it
    try:
        from spacehooks.run import gpu
    except ImportError:
        return
    gpu.release(settings, space_id)


def _gpu_devices(settings, space: dict) -> list[str]:
    """The Space's GPUs (CDI names), allocated in the state store before its container is made."""
    if not limits_for(settings, space).get("gpus"):
        return []
    try:
        from spacehooks.run import gpu
    except ImportError as exc:
        raise SpaceError(f"hardware {space.get('hardware')} needs GPUs, but GPU support is not installed") from exc
    return gpu.devices_for(settings, space["id"], space.get("hardware") or settings["run.default_hardware"])


def _launch(settings, st, space: dict, image: str, config: dict, build_id,
            timeout: float | None = None) -> tuple[str, int]:
    """Start a container beside the current one and wait until it answers HTTP."""
    eng = engine.get(settings)
    port = free_port(settings, st)
    devices: list[str] = []
    if eng.host_fences:  # else the engine's own placement and fences (a cluster's) stand in
        netfence.prepare(settings, space["id"])
        devices = _gpu_devices(settings, space)
    spec = runspec.spec(settings, st, space, image, config, build_id, port, devices)
    name = eng.run(spec)

    def waiting(note: str) -> None:  # what it waits for ("waiting for a GPU node: ...") shows on its page
        st.update_space(space["id"], error=note)
    try:
        wait_http(settings, eng, name, port, timeout or duration_seconds(config.get("startup_duration_timeout")),
                  waiting)
    except BaseException:
        remove(settings, name)
        raise
    return name, port


def wait_http(settings, eng: engine.Engine, name: str, port: int, timeout: float,
              on_wait=lambda note: None) -> None:
    """Until the version answers (the engine says how it knows); raises StartFailed."""
    found = eng.wait_ready(name, port, timeout, on_wait)
    if not found.answering:
        raise StartFailed(found.stage or stages.RUNTIME_ERROR, found.reason)


_oom_kills = hostwait.oom_kills  # the supervisor's count of the kernel's OOM kills


def log_tail(settings, name: str) -> str:
    """`log tail:` and the app's last lines."""
    return hostwait.log_tail(engine.get(settings), name)


def where(settings, space: dict) -> str:
    """` on host:port`, where the gateway reaches the Space (its engine's address), or ''."""
    try:
        host, port = engine.get(settings).address(space["id"], space["container"], space["port"])
        return f" on {host}:{port}"
    except (SpaceError, engine.EngineError, TypeError):
        return ""  # no serving version (no address to unpack), or the engine cannot say


def remove(settings, name: str) -> None:
    """Stop (10 s, then killed) and remove; gone already is fine."""
    engine.get(settings).remove(name, stop_timeout=10)


def reap(settings, st: state_mod.State) -> None:
    """Remove containers whose grace period after a blue-green switch has passed."""
    for name in st.due_retired():
        remove(settings, name)
        st.forget_retired(name)


def deploy(settings, space_id: str, image: str | None, build_id, commit: str, config: dict) -> None:
    """Put a freshly built image in service; on failure the old version keeps serving."""
    st = state_mod.open(settings)
    try:
        _switch(settings, st, space_id, image, build_id, commit, config)
    finally:
        st.close()


def _switch(settings, st, space_id, image, build_id, commit, config, timeout: float | None = None) -> None:
    space = st.get_space(space_id)
    old = space.get("container")
    serving = bool(old) and space["stage"] in stages.ANSWERING
    if spaceconfig.is_static(config):
        try:  # written by the build; again here if gc or a hand removed it since
            staticsite.materialise(settings.home, space_id, space["repo_path"], commit,
                                   export_user=settings["build.export_user"], settings=settings)
        except SpaceError as exc:
            kept = space.get("commit") and space["stage"] in stages.ANSWERING
            stages.change(st, space_id, stages.RUNNING if kept else stages.RUNTIME_ERROR, "deploy failed",
                          error=f"build #{build_id} not deployed: {exc.format_message()}")
            return
        stages.change(st, space_id, stages.RUNNING, "deploy", image=None, port=None, container=None, commit=commit,
                      build_id=build_id, config=config, error=None)
        if old:
            st.retire(space_id, old, time.time() + settings["run.grace_seconds"])
        return
    with capacity.admission(settings):  # the check and the stage that claims the room, together
        wait = capacity.defer(settings, st, space, serving, image=image, build_id=build_id, commit=commit,
                              config=config)
        if wait:
            _append_run_log(settings, st, space_id, f"build #{build_id}: {wait}")
            return
        stages.change(st, space_id, stages.RUNNING_APP_STARTING if serving else stages.APP_STARTING, "deploy")
    try:
        name, port = _launch(settings, st, space, image, config, build_id, timeout)
    except (StartFailed, SpaceError) as exc:
        stage = getattr(exc, "stage", stages.RUNTIME_ERROR)
        reason = exc.reason if isinstance(exc, StartFailed) else exc.format_message()
        if serving:
            stages.change(st, space_id, stages.RUNNING, "start failed",
                          error=f"build #{build_id} did not start ({stage}): {reason}")
        else:
            stages.change(st, space_id, stage, "start failed", error=reason, container=None, port=None)
            _release_gpu(settings, space_id)
        _append_run_log(settings, st, space_id, f"build #{build_id}: {stage}: {reason}")
        return
    stages.change(st, space_id, stages.RUNNING, "started", image=image, port=port, container=name, commit=commit,
                  build_id=build_id, config=config, error=None)
    if old and old != name:
        st.retire(space_id, old, time.time() + settings["run.grace_seconds"])


def _append_run_log(settings, st, space_id: str, line: str) -> None:
    path = st.run_log_path(space_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line + "\n")
    logs.rotate(path, settings)


def start(settings, space_id: str) -> None:
    """(Re)start the Space's current image beside whatever runs now."""
    st = state_mod.open(settings)
    try:
        space = st.get_space(space_id)
        if space is None:
            raise SpaceError(f"no Space {space_id!r}", hint="push to its repository first")
        if not space.get("build_id"):
            raise SpaceError(f"{space_id} has no successful build yet", hint="push to it or run `spacehooks rebuild`")
        _switch(settings, st, space_id, space["image"], space["build_id"], space["commit"], space["config"])
    finally:
        st.close()


def restart(settings, space_id: str) -> None:
    start(settings, space_id)


def stop(settings, space_id: str, stage: str = stages.STOPPED) -> None:
    """Remove the Space's container and leave it in `stage` (PAUSED, STOPPED, SLEEPING, DELETING)."""
    st = state_mod.open(settings)
    try:
        space = st.get_space(space_id)
        if space is None:
            raise SpaceError(f"no Space {space_id!r}", hint="see `spacehooks spaces`")
        stages.change(st, space_id, stage, stages.STOP_EVENTS[stage], port=None, container=None)
        if space.get("container"):
            remove(settings, space["container"])
        _release_gpu(settings, space_id)
    finally:
        st.close()


def sleep(settings, space_id: str) -> None:
    stop(settings, space_id, stage=stages.SLEEPING)


def wake(settings, space_id: str, timeout: float | None = None) -> int:
    """Start a sleeping Space and return its port once it answers."""
    st = state_mod.open(settings)
    try:
        space = st.get_space(space_id)
        if space is None:
            raise SpaceError(f"no Space {space_id!r}")
        if space["stage"] == stages.RUNNING and space.get("port"):
            return space["port"]
        if space["stage"] not in (stages.SLEEPING, stages.STOPPED):
            raise SpaceError(f"{space_id} is {space['stage']}, not sleeping")
        _switch(settings, st, space_id, space["image"], space["build_id"], space["commit"], space["config"], timeout)
        space = st.get_space(space_id)
        if space["stage"] != stages.RUNNING:
            raise SpaceError(f"{space_id} did not wake: {space['stage']}: {space.get('error')}")
        return space["port"]
    finally:
        st.close()
