"""`spacehooks state rebuild`: a new state store made from what outlives it, when the old one is
damaged or gone: the bare repositories under repo_root and the labels of the Space containers.

What cannot be read back is set to the safe side (README, "Recovering the state store"):
- a Space with no running container is PAUSED (it may have been paused by an admin; it never
  starts by itself; `spacehooks resume` or `rebuild` brings it up);
- hardware is run.default_hardware, per-Space limits and sleep time are the server defaults
  (no GPU is handed out again by guess);
- variables are empty (secrets are files and are kept); build history is gone (logs stay);
- users, organisations and private Spaces come back from SPACEHOOKS_HOME/access.json (a private
  Space never turns public); tokens and the audit log do not.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from spacehooks import engine
from spacehooks.access import accounts
from spacehooks.build import builder
from spacehooks.run import runspec
from spacehooks.run import storage
from spacehooks.queue import jobs as queue_mod
from spacehooks import stages
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError
from spacehooks.git.repo import Repo
from spacehooks.queue.heal import repositories

PAUSED_NOTE = ("state store rebuilt: whether this Space served is unknown, so it stays off;"
               " `spacehooks resume {id}` starts its last image, `spacehooks rebuild {id}` builds its branch")


def rebuild(settings, echo, force: bool = False) -> dict[str, str]:
    """Move a damaged (or, with force, any) store aside and write a new one; returns per Space what was set."""
    _move_aside(settings, force, echo)
    found = _containers(settings)
    repos = repositories(settings)
    access = accounts.read_access_file(settings.home)  # before anything rewrites it
    st = state_mod.open(settings)
    try:
        done = _fill(settings, st, found, repos, echo)
        if access is not None:
            # users, organisations and private Spaces come back from the access file; tokens
            # cannot (only their hashes were kept): they are made again
            accounts.restore(settings, st, access)
            echo(f"restored {len(access.get('users', {}))} users, {len(access.get('orgs', []))} organisations and "
                 f"{len(access.get('private', []))} private Spaces from {accounts.ACCESS_FILE}; tokens must be created again")
    finally:
        st.close()
    storage.recover(settings, set(done), echo)  # /data images outlive the store
    return done


def _move_aside(settings, force: bool, echo) -> None:
    path = Path(settings.db_path)
    if path.exists() and path.stat().st_size:
        try:
            problems = state_mod.integrity_problems(settings)
        except SpaceError as exc:
            problems = [exc.message]
        if not problems and not force:
            raise SpaceError(f"the state store {path} is not damaged: nothing to rebuild",
                             hint="add --force to replace it anyway (it is kept beside, renamed)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{path}{suffix}")
        if old.exists():
            kept = Path(f"{path}.damaged-{stamp}{suffix}")
            os.replace(old, kept)
            echo(f"kept the old {old.name} as {kept}")


def _containers(settings) -> dict[str, list[dict]]:
    """Every Space container, newest build first, as {space id: [facts]}."""
    out: dict[str, list[dict]] = {}
    for container in engine.get(settings).containers(runspec.LABEL):
        labels = container.labels
        space_id = labels.get(runspec.LABEL, "")
        try:
            build_id = int(labels.get("spacehooks.build", ""))
        except ValueError:
            continue
        out.setdefault(space_id, []).append({
            "name": container.name, "build_id": build_id, "port": container.host_port,
            "running": container.running,
            "commit": labels.get("spacehooks.commit") or None, "repo": labels.get("spacehooks.repo") or None})
    for facts in out.values():
        facts.sort(key=lambda f: (f["running"], f["build_id"]), reverse=True)
    return out


def _fill(settings, st, found: dict, repos: dict, echo) -> dict[str, str]:
    done, last_build = {}, 0
    for space_id in sorted(set(found) | set(repos)):
        facts = found.get(space_id, [])
        best = facts[0] if facts else None
        repo = repos.get(space_id) or Path(best["repo"] if best and best["repo"] else "")
        if not str(repo) or not (repo / "HEAD").exists():
            echo(f"{space_id}: skipped, its repository was not found under {settings['repo_root']}")
            continue
        st.ensure_space(space_id, repo, hardware=settings["run.default_hardware"])
        last_build = max([last_build, *(f["build_id"] for f in facts), *_logged_builds(st, space_id)])
        commit = best["commit"] if best else None
        config = _config(settings, repo, commit)
        if best:
            st.update_space(space_id, image=builder.image_name(space_id, best["build_id"]), build_id=best["build_id"],
                            commit=commit, config=config, container=best["name"], port=best["port"])
            for other in facts[1:]:  # leftovers of a blue-green switch go after the grace period
                st.retire(space_id, other["name"], time.time() + settings["run.grace_seconds"])
        if best and best["running"]:
            stages.change(st, space_id, stages.RUNNING, "state rebuild", error=None)
            done[space_id] = f"RUNNING in {best['name']} (build #{best['build_id']}, commit {(commit or 'unknown')[:12]})"
        else:
            stages.change(st, space_id, stages.PAUSED, "state rebuild", container=None, port=None,
                            error=PAUSED_NOTE.format(id=space_id))
            done[space_id] = "PAUSED (no running container)"
        echo(f"{space_id}: {done[space_id]}")
    st.continue_build_ids(last_build)
    return done


def _config(settings, repo: Path, commit: str | None) -> dict:
    """README values of the deployed commit, else of the branch tip (routing needs sdk and app_port)."""
    try:
        rev = commit or Repo(repo).resolve_ref(f"refs/heads/{settings['deploy_branch']}")
        return queue_mod.read_config(repo, rev)[0] if rev else {}
    except SpaceError:
        return {}


def _logged_builds(st, space_id: str) -> list[int]:
    folder = st.build_log_path(space_id, 0).parent
    return [int(p.stem) for p in folder.glob("*.log") if p.stem.isdigit()] if folder.is_dir() else []
