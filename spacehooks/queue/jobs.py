"""Build queue: the server records a build for each push, the worker claims it, a newer push
supersedes it; a push on the server's account follows its build in the store (follow.py).
"""
from __future__ import annotations

import os
from pathlib import Path

from spacehooks import stages
from spacehooks import state as state_mod
from spacehooks.follow import follow
from spacehooks.errors import SpaceError
from spacehooks.output import Out



def read_config(repo_path: Path, commit: str) -> tuple[dict, str | None, str | None]:
    """README values of the commit, plus (stage, error) when it cannot be built."""
    from spacehooks.push import spaceconfig
    from spacehooks.git.repo import Repo
    repo = Repo(repo_path)
    readme = spaceconfig.readme_name(repo.root_names(commit)) or "README.md"
    data = repo.read_blob(commit, readme)
    if data is None:
        return {}, stages.CONFIG_ERROR, "README.md is missing: add one with a YAML block that sets sdk"
    cfg = spaceconfig.parse(data, readme)
    if cfg.errors:
        return cfg.values, stages.CONFIG_ERROR, "; ".join(str(p) for p in cfg.errors)
    app_file = cfg.app_file
    if cfg.sdk == "docker":
        if repo.entry(commit, "Dockerfile") is None:
            return cfg.values, stages.NO_APP_FILE, "sdk docker needs a Dockerfile at the repository root"
    elif app_file and repo.entry(commit, app_file) is None:
        return cfg.values, stages.NO_APP_FILE, f"app file {app_file} is not in the commit: add it or set app_file in README.md"
    return cfg.values, None, None


def enqueue(settings, st: state_mod.State, space_id: str, repo_path: Path, commit: str,
            pusher: str = "", no_cache: bool = False, config: dict | None = None) -> int:
    """Record a build and supersede older queued or running builds of the Space."""
    st.ensure_space(space_id, repo_path, hardware=settings["run.default_hardware"])
    build_id = st.queue_build(space_id, commit, pusher, no_cache, config or {})
    space = st.get_space(space_id)
    stages.change(st, space_id, stages.RUNNING_BUILDING if space["stage"] in stages.ANSWERING else stages.BUILDING,
                  "push")
    return build_id


def claim(st: state_mod.State, max_running: int) -> dict | None:
    """Take the oldest queued build whose Space has none running, if fewer than max_running run."""
    return st.claim_next_build(max_running)


def requeue_orphans(st: state_mod.State) -> list[int]:
    """Builds left running by a worker that is gone go back to the queue (restart pick-up)."""
    orphans = []
    for build_id, pid in st.running_builds():
        if pid == os.getpid() or _alive(pid):
            continue
        orphans.append(build_id)
    for build_id in orphans:
        st.update_build(build_id, status=state_mod.QUEUED, worker_pid=None, started_at=None)
    return orphans


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_requested(st: state_mod.State, build_id: int) -> bool:
    return st.stop_requested(build_id)


def follow_build(st: state_mod.State, build_id: int, out: Out, seconds: float | None) -> int:
    """Stream a build's log lines until it ends or `seconds` pass; print where it stands."""
    build = st.get_build(build_id)
    # the worker ends the build row only after the deploy, so the stage is final then
    return follow(lambda: _look(st, build_id), st.build_log_path(build["space_id"], build_id), out, seconds)


def _look(st: state_mod.State, build_id: int) -> tuple[dict, dict]:
    build = st.get_build(build_id)
    return build, (st.get_space(build["space_id"]) or {}) if build["status"] in state_mod.FINAL else {}


def require_space(st: state_mod.State, space_id: str) -> dict:
    space = st.get_space(space_id)
    if space is None:
        raise SpaceError(f"no Space {space_id!r}", hint="see `spacehooks spaces` for the known Spaces")
    return space
