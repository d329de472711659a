"""What the admin commands do: list, inspect, logs, rebuild, restart, pause, delete, secrets, variables.

Images (gc, rollback) are in images.py, per-Space limits in limits.py, checks in doctor.py.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from spacehooks import admission, builder, netfence, podman, runner
from spacehooks import queue as queue_mod
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError
from spacehooks.output import Out

Echo = Callable[[str], None]


def _open(settings):
    return state_mod.open(settings)


def spaces(settings, echo: Echo) -> None:
    st = _open(settings)
    rows = st.list_spaces()
    st.close()
    if not rows:
        echo("no Spaces yet: push to a repository with the hooks installed")
        return
    echo(f"{'SPACE':30} {'STAGE':22} {'COMMIT':12} {'PORT':6} HARDWARE")
    for s in rows:
        echo(f"{s['id']:30} {s['stage']:22} {(s['commit'] or '-')[:12]:12} {str(s['port'] or '-'):6} {s['hardware'] or '-'}")


def status(settings, space_id: str, echo: Echo) -> None:
    st = _open(settings)
    try:
        s = queue_mod.require_space(st, space_id)
        builds = st.builds(space_id, limit=5)
    finally:
        st.close()
    echo(f"space:     {s['id']}")
    echo(f"stage:     {s['stage']}")
    echo(f"commit:    {s['commit'] or '-'}")
    echo(f"build:     {s['build_id'] or '-'}")
    echo(f"container: {s['container'] or '-'}")
    echo(f"port:      {s['port'] or '-'}")
    echo(f"hardware:  {s['hardware'] or '-'}")
    if not podman.reachable(settings["podman_url"]):
        echo(f"podman:    DOWN: not reachable at {settings['podman_url']}; builds wait in the queue,"
             " app output is not copied, `spacehooks doctor` says more")
    if s["error"]:
        echo("error:     " + s["error"].replace("\n", "\n           "))
    for b in builds:
        echo(f"build #{b['id']}: {b['status']} {b['commit'][:12]} by {b['pusher'] or '-'}"
             + (f" ({b['error'].splitlines()[0]})" if b["error"] else ""))


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
    from podman.errors import NotFound
    try:
        container = podman.client(settings).containers.get(space["container"])
    except NotFound as exc:
        raise SpaceError(f"container {space['container']} of {space_id} is gone", hint=f"spacehooks restart {space_id}") from exc
    # the worker copies the app's output into the run log: ask Podman only for what is newer
    since = int(path.stat().st_mtime) if path.exists() else None
    for chunk in container.logs(stream=follow, follow=follow, stdout=True, stderr=True, since=since):
        echo(chunk.decode(errors="replace").rstrip("\n"))


class _EchoOut(Out):
    def __init__(self, echo: Echo):
        super().__init__()
        self._echo = echo

    def _write(self, prefix: str, message: str) -> None:
        for line in str(message).splitlines() or [""]:
            self._echo(line if prefix == "       " else prefix + line)


def rebuild(settings, space_id: str, no_cache: bool, echo: Echo) -> int:
    st = _open(settings)
    try:
        space = queue_mod.require_space(st, space_id)
        from spacehooks.gitrepo import Repo
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
    echo(f"build #{build_id} queued for {space_id}" + (" (no cache)" if no_cache else ""))
    return build_id


def _existing(settings, space_id: str) -> dict:
    st = _open(settings)
    try:
        return queue_mod.require_space(st, space_id)
    finally:
        st.close()


def restart(settings, space_id: str, echo: Echo) -> None:
    _existing(settings, space_id)
    runner.restart(settings, space_id)
    _report_stage(settings, space_id, echo)


def _report_stage(settings, space_id: str, echo: Echo) -> None:
    space = _existing(settings, space_id)
    echo(f"{space_id}: {space['stage']}")
    if space["stage"] == "WAITING_CAPACITY":  # not a failure: it starts when room frees
        echo(f"  {space['error']}")
        return
    if space["error"]:
        raise SpaceError(f"{space_id}: {space['error']}")


def pause(settings, space_id: str, echo: Echo) -> None:
    _existing(settings, space_id)
    runner.stop(settings, space_id, stage="PAUSED")
    echo(f"{space_id}: PAUSED (resume with `spacehooks resume {space_id}`)")
    for started in admission.admit_waiting(settings):  # its room may be what another waits for
        echo(f"{started}: started (it was waiting for room)")


def resume(settings, space_id: str, echo: Echo) -> None:
    space = _existing(settings, space_id)
    if space["stage"] not in ("PAUSED", "STOPPED", "SLEEPING"):
        raise SpaceError(f"{space_id} is {space['stage']}, not paused")
    runner.start(settings, space_id)
    _report_stage(settings, space_id, echo)


def delete(settings, space_id: str, echo: Echo) -> None:
    space = _existing(settings, space_id)
    url = settings["podman_url"]
    if not podman.reachable(url):  # its containers and images would be left behind, unnamed
        raise SpaceError(f"the Podman service at {url} is not answering; nothing of {space_id} was deleted",
                         hint="start it (contrib/podman/start-service.sh, or systemctl start spacehooks-podman.socket)"
                              " and run the command again")
    st = _open(settings)
    try:
        st.update_space(space_id, stage="DELETING")
        st.cancel_builds(space_id)
        runner.stop(settings, space_id, stage="DELETING")
        podman.remove_all(settings, f"{runner.LABEL}={space_id}", builder.image_repo(space_id))
        netfence.remove_space(settings, space_id)
        if st.storage_of(space_id):  # no container holds it any more
            from spacehooks import storage
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
    echo(f"{space_id} deleted (its git repository {space['repo_path']} is left alone)")
    for started in admission.admit_waiting(settings):
        echo(f"{started}: started (it was waiting for room)")


# --- secrets and variables: changing one restarts the Space ------------------------------
def _check_key(key: str) -> None:
    if not state_mod.SECRET_KEY.fullmatch(key):
        raise SpaceError(f"{key!r} is not a valid name", hint="use letters, digits and _, not starting with a digit")


def _restart_if_running(settings, space_id: str, echo: Echo) -> None:
    space = _existing(settings, space_id)
    if space["stage"] in state_mod.ANSWERING and space["container"]:
        runner.restart(settings, space_id)
        echo(f"{space_id} restarted: {_existing(settings, space_id)['stage']}")


def secret_set(settings, space_id: str, key: str, value: str, echo: Echo = lambda s: None) -> None:
    _check_key(key)
    st = _open(settings)
    st.ensure_space(space_id, _repo_path(settings, space_id), hardware=settings["run.default_hardware"])
    st.close()
    state_mod.write_secret(settings.home, space_id, key, value)
    echo(f"secret {key} set for {space_id}")
    _restart_if_running(settings, space_id, echo)


def secret_list(settings, space_id: str, echo: Echo) -> None:
    for key in state_mod.read_secrets(settings.home, space_id):
        echo(key)


def secret_delete(settings, space_id: str, key: str, echo: Echo) -> None:
    if not state_mod.delete_secret(settings.home, space_id, key):
        raise SpaceError(f"{space_id} has no secret {key}", hint=f"see `spacehooks secrets list {space_id}`")
    echo(f"secret {key} deleted from {space_id}")
    _restart_if_running(settings, space_id, echo)


def variable_set(settings, space_id: str, key: str, value: str, echo: Echo = lambda s: None) -> None:
    _check_key(key)
    st = _open(settings)
    try:
        st.ensure_space(space_id, _repo_path(settings, space_id), hardware=settings["run.default_hardware"])
        st.set_variable(space_id, key, value)
    finally:
        st.close()
    echo(f"variable {key} set for {space_id}")
    _restart_if_running(settings, space_id, echo)


def variable_list(settings, space_id: str, echo: Echo) -> None:
    st = _open(settings)
    try:
        for key, value in st.variables(space_id).items():
            echo(f"{key}={value}")
    finally:
        st.close()


def variable_delete(settings, space_id: str, key: str, echo: Echo) -> None:
    st = _open(settings)
    try:
        found = st.delete_variable(space_id, key)
    finally:
        st.close()
    if not found:
        raise SpaceError(f"{space_id} has no variable {key}", hint=f"see `spacehooks variables list {space_id}`")
    echo(f"variable {key} deleted from {space_id}")
    _restart_if_running(settings, space_id, echo)


def _repo_path(settings, space_id: str) -> Path:
    return Path(settings["repo_root"]) / f"{space_id}.git"
