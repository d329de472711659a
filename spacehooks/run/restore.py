"""Bring Spaces back when the server starts: after a restart of spacehooks or a reboot of the host.

A reboot stops every container but removes nothing, so a stopped container is started again
as it was (same port). A container that is gone is created again from the Space's image. An
image that is gone too (Podman's storage was wiped) needs a build of the deployed commit.
PAUSED, SLEEPING and STOPPED Spaces stay as they are; queued builds stay queued.
"""
from __future__ import annotations

import logging
from pathlib import Path

from spacehooks import engine
from spacehooks.build import staticsite
from spacehooks.run import runner
from spacehooks.run import storage
from spacehooks.queue import jobs as queue_mod
from spacehooks import stages
from spacehooks.push import spaceconfig
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError, report_bug

# Stages that promise a container serving the Space.
log = logging.getLogger("spacehooks.restore")


def restore_all(settings, echo=log.info) -> dict[str, str]:
    """Start again every Space whose stage says it serves but whose container does not run.

    Returns what was done per Space; one Space failing does not keep the others down."""
    try:
        engine.get(settings).ping()
    except SpaceError as exc:
        echo(f"restore skipped: {exc.message}")
        return {}
    st = state_mod.open(settings)
    try:
        spaces = [s for s in st.list_spaces() if s["stage"] in stages.STARTED]
    finally:
        st.close()
    done = {}
    for space in spaces:
        try:
            done[space["id"]] = restore_space(settings, space)
        except SpaceError as exc:
            done[space["id"]] = f"not restored: {exc.message}"
        except Exception as exc:  # a bug for one Space must not keep the others down
            done[space["id"]] = f"not restored: internal error, see {report_bug(exc)}"
        echo(f"restore {space['id']}: {done[space['id']]}")
    return done


def restore_space(settings, space: dict) -> str:
    space_id = space["id"]
    if spaceconfig.is_static(space.get("config") or {}):
        if space.get("commit"):  # a deploy from before deploy folders, or one gc removed by mistake
            staticsite.materialise(settings.home, space_id, space["repo_path"], space["commit"],
                                   export_user=settings["build.export_user"], settings=settings)
        _settle(settings, space_id)
        return "static: served by the gateway"
    eng = engine.get(settings)
    container = eng.state(space["container"]) if space.get("container") else None
    if container is not None and container.status == "running":
        _settle(settings, space_id)
        return "running"
    if not space.get("build_id") or not space.get("image"):
        return "no deployed version yet (its build runs again from the queue)"
    if not eng.image_exists(space["image"]):
        return _rebuild(settings, space)
    if container is not None:
        try:
            storage.run_fields(settings, space_id)  # after a reboot: its /data mounted before it starts
            eng.start(container.name)
            runner.wait_http(settings, eng, container.name, space["port"],
                             runner.duration_seconds(space["config"].get("startup_duration_timeout")))
            _settle(settings, space_id)
            return f"container {container.name} started again"
        except (runner.StartFailed, SpaceError, engine.EngineError, OSError):
            pass  # e.g. its port is taken now: a fresh container from the same image gets its chance below
    # nothing serves now: a start that fails must show RUNTIME_ERROR, not keep "RUNNING"
    if container is not None:
        runner.remove(settings, container.name)
    st = state_mod.open(settings)
    try:
        st.update_space(space_id, container=None, port=None)
    finally:
        st.close()
    runner.start(settings, space_id)
    space = _settle(settings, space_id)
    if space["stage"] not in stages.ANSWERING:
        return f"did not start: {space['stage']}: {space.get('error')}"
    return f"started again from {space['image']}"


def _rebuild(settings, space: dict) -> str:
    st = state_mod.open(settings)
    try:
        stages.change(st, space["id"], stages.BUILDING, "restore", container=None, port=None,
                        error=f"image {space['image']} was missing at restore: rebuilding commit {space['commit'][:12]}")
        build_id = queue_mod.enqueue(settings, st, space["id"], Path(space["repo_path"]), space["commit"],
                                     "restore", config=space["config"])
    finally:
        st.close()
    return f"image {space['image']} is missing: build #{build_id} queued"


def _settle(settings, space_id: str) -> dict:
    """A serving Space shows RUNNING_BUILDING while a build waits or runs, else RUNNING."""
    st = state_mod.open(settings)
    try:
        space = st.get_space(space_id)
        pending = st.pending_build_count(space_id)
        if space["stage"] in stages.ANSWERING:
            stages.change(st, space_id, stages.RUNNING_BUILDING if pending else stages.RUNNING, "restore")
        return st.get_space(space_id)
    finally:
        st.close()
