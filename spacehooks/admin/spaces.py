"""What the admin commands do: list, inspect, logs, rebuild, restart, pause, delete, secrets, variables.

Each operation is `op(settings, space_id, ...) -> result` (spacehooks/results.py) and prints
nothing: the CLI formats results, an HTTP API serialises them. Only `logs` streams, through a
line callback. Images (gc, rollback) are in images.py, per-Space limits in limits.py, checks in
doctor.py.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

from spacehooks import engine
from spacehooks.build import builder
from spacehooks.engine import netfence
from spacehooks.run import runner
from spacehooks.run import admission
from spacehooks.queue import jobs as queue_mod
from spacehooks import stages
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError
from spacehooks.output import Out
from spacehooks.results import BuildQueued, BuildRow, Deleted, KeyChanged, SpaceRow, SpaceStatus, StageResult

Echo = Callable[[str], None]


def _open(settings):
    return state_mod.open(settings)


def spaces(settings) -> list[SpaceRow]:
    st = _open(settings)
    try:
        rows = st.list_spaces()
    finally:
        st.close()
    return [SpaceRow(s["id"], s["stage"], s["commit"], s["port"], s["hardware"]) for s in rows]


def status(settings, space_id: str) -> SpaceStatus:
    st = _open(settings)
    try:
        s = queue_mod.require_space(st, space_id)
        builds = st.builds(space_id, limit=5)
    finally:
        st.close()
    down = None if engine.get(settings).reachable() else settings["podman_url"]
    return SpaceStatus(s["id"], s["stage"], s["commit"], s["build_id"], s["container"], s["port"], s["hardware"],
                       s["error"], [BuildRow(b["id"], b["status"], b["commit"], b["pusher"], b["error"]) for b in builds],
                       podman_down=down)


def logs(settings, space_id: str, build: bool, follow: bool, echo: Echo) -> None:
    st = _open(settings)
    try:
        space = queue_mod.require_space(st, space_id)
        if build:
            builds = st.builds(space_id, limit=1)
            if not builds:
                raise SpaceError(f"{space_id} has no builds yet", hint="push to it")
            queue_mod.follow_build(st, builds[0]["id"], _EchoOut(echo), None if follow else 0)
            return
    finally:
        st.close()
    path = state_mod.State(None, Path(settings.home)).run_log_path(space_id)
    if path.exists():
        echo(path.read_text().rstrip())
    if not space["container"]:
        if not path.exists():
            echo(f"{space_id} has no running container ({space['stage']})")
        return
    eng = engine.get(settings)
    if eng.state(space["container"]) is None:
        raise SpaceError(f"container {space['container']} of {space_id} is gone", hint=f"spacehooks restart {space_id}")
    # the worker copies the app's output into the run log: ask Podman only for what is newer
    since = int(path.stat().st_mtime) if path.exists() else 0
    for chunk in eng.follow_logs(space["container"], since=since, follow=follow):
        echo(chunk.decode(errors="replace").rstrip("\n"))


class _EchoOut(Out):
    def __init__(self, echo: Echo):
        super().__init__()
        self._echo = echo

    def _write(self, prefix: str, message: str) -> None:
        for line in str(message).splitlines() or [""]:
            self._echo(line if prefix == "       " else prefix + line)


def rebuild(settings, space_id: str, no_cache: bool = False) -> BuildQueued:
    st = _open(settings)
    try:
        space = queue_mod.require_space(st, space_id)
        from spacehooks.git.repo import Repo
        commit = Repo(space["repo_path"]).resolve_ref(f"refs/heads/{settings['deploy_branch']}")
        if commit is None:
            raise SpaceError(f"{space_id}: branch {settings['deploy_branch']} has no commit", hint="push to it")
        config, stage, error = queue_mod.read_config(Path(space["repo_path"]), commit)
        if stage:
            raise SpaceError(f"{space_id} cannot be built: {error}")
        build_id = queue_mod.enqueue(settings, st, space_id, Path(space["repo_path"]), commit, "admin",
                                     no_cache=no_cache, config=config)
    finally:
        st.close()
    return BuildQueued(space_id, build_id, no_cache)


def _existing(settings, space_id: str) -> dict:
    st = _open(settings)
    try:
        return queue_mod.require_space(st, space_id)
    finally:
        st.close()


def restart(settings, space_id: str) -> StageResult:
    _existing(settings, space_id)
    runner.restart(settings, space_id)
    return stage_of(settings, space_id)


def stage_of(settings, space_id: str, note: str | None = None) -> StageResult:
    space = _existing(settings, space_id)
    return StageResult(space_id, space["stage"], space["error"], note)


def pause(settings, space_id: str) -> StageResult:
    _existing(settings, space_id)
    runner.stop(settings, space_id, stage=stages.PAUSED)
    admitted = admission.admit_waiting(settings)  # its room may be what another waits for
    return replace(stage_of(settings, space_id), admitted=tuple(admitted))


def resume(settings, space_id: str) -> StageResult:
    space = _existing(settings, space_id)
    if space["stage"] not in stages.HALTED:
        raise SpaceError(f"{space_id} is {space['stage']}, not paused")
    runner.start(settings, space_id)
    return stage_of(settings, space_id)


def delete(settings, space_id: str) -> Deleted:
    space = _existing(settings, space_id)
    url = settings["podman_url"]
    if not engine.get(settings).reachable():  # its containers and images would be left behind, unnamed
        raise SpaceError(f"the Podman service at {url} is not answering; nothing of {space_id} was deleted",
                         hint="start it (contrib/podman/start-service.sh, or systemctl start spacehooks-podman.socket)"
                              " and run the command again")
    st = _open(settings)
    try:
        stages.change(st, space_id, stages.DELETING, "delete")
        st.cancel_builds(space_id)
        runner.stop(settings, space_id, stage=stages.DELETING)
        engine.get(settings).remove_all(f"{runner.LABEL}={space_id}", builder.image_repo(space_id))
        netfence.remove_space(settings, space_id)
        if st.storage_of(space_id):  # no container holds it any more
            from spacehooks.run import storage
            storage.destroy(settings, space_id)
        st.delete_space(space_id)
    finally:
        st.close()
    home = Path(settings.home)
    for folder in (state_mod.secrets_dir(home, space_id), home / "logs" / "builds" / space_id, home / "run" / space_id):
        shutil.rmtree(folder, ignore_errors=True)
    run_log = state_mod.State(None, home).run_log_path(space_id)
    for path in [run_log, *run_log.parent.glob(run_log.name + ".*")]:  # with its rotated copies
        path.unlink(missing_ok=True)
    admitted = admission.admit_waiting(settings)
    return Deleted(space_id, str(space["repo_path"]), tuple(admitted))


# --- secrets and variables: changing one restarts the Space ------------------------------
def _check_key(key: str) -> None:
    if not state_mod.SECRET_KEY.fullmatch(key):
        raise SpaceError(f"{key!r} is not a valid name", hint="use letters, digits and _, not starting with a digit")


def restart_if_running(settings, space_id: str) -> str | None:
    """The stage after a restart, None when the Space had no running container to restart."""
    space = _existing(settings, space_id)
    if space["stage"] in stages.ANSWERING and space["container"]:
        runner.restart(settings, space_id)
        return _existing(settings, space_id)["stage"]
    return None


def secret_set(settings, space_id: str, key: str, value: str) -> KeyChanged:
    _check_key(key)
    st = _open(settings)
    st.ensure_space(space_id, _repo_path(settings, space_id), hardware=settings["run.default_hardware"])
    st.close()
    state_mod.write_secret(settings.home, space_id, key, value)
    return KeyChanged(space_id, "secret", key, "set", restart_if_running(settings, space_id))


def secret_list(settings, space_id: str) -> list[str]:
    """The secrets' names, never their values."""
    return list(state_mod.read_secrets(settings.home, space_id))


def secret_delete(settings, space_id: str, key: str) -> KeyChanged:
    if not state_mod.delete_secret(settings.home, space_id, key):
        raise SpaceError(f"{space_id} has no secret {key}", hint=f"see `spacehooks secrets list {space_id}`")
    return KeyChanged(space_id, "secret", key, "deleted", restart_if_running(settings, space_id))


def variable_set(settings, space_id: str, key: str, value: str) -> KeyChanged:
    _check_key(key)
    st = _open(settings)
    try:
        st.ensure_space(space_id, _repo_path(settings, space_id), hardware=settings["run.default_hardware"])
        st.set_variable(space_id, key, value)
    finally:
        st.close()
    return KeyChanged(space_id, "variable", key, "set", restart_if_running(settings, space_id))


def variable_list(settings, space_id: str) -> dict[str, str]:
    st = _open(settings)
    try:
        return st.variables(space_id)
    finally:
        st.close()


def variable_delete(settings, space_id: str, key: str) -> KeyChanged:
    st = _open(settings)
    try:
        found = st.delete_variable(space_id, key)
    finally:
        st.close()
    if not found:
        raise SpaceError(f"{space_id} has no variable {key}", hint=f"see `spacehooks variables list {space_id}`")
    return KeyChanged(space_id, "variable", key, "deleted", restart_if_running(settings, space_id))


def _repo_path(settings, space_id: str) -> Path:
    return Path(settings["repo_root"]) / f"{space_id}.git"
