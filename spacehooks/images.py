"""gc of old Space images and logs, and rollback to an earlier build's image."""
from __future__ import annotations

import shutil
from pathlib import Path

from spacehooks import builder, engine, runner, spaceconfig, staticsite
from spacehooks import queue as queue_mod
from spacehooks import state as state_mod
from spacehooks.admin import _open, stage_of
from spacehooks.errors import SpaceError
from spacehooks.results import GcResult, StageResult


def gc(settings) -> GcResult:
    """Remove Space images and build logs beyond the newest run.keep_builds per Space (the
    running one stays), run-log copies beyond logs.keep, logs of deleted Spaces, and static
    Spaces' deploy folders other than the one served."""
    keep = settings["run.keep_builds"]
    st = _open(settings)
    eng = engine.get(settings)
    result = GcResult()
    try:
        runner.reap(settings, st)
        for space in st.list_spaces():
            tags = []
            for image in eng.images(builder.image_repo(space["id"])):
                for tag in image.tags:
                    if tag.startswith(builder.image_repo(space["id"]) + ":b"):
                        tags.append((int(tag.rsplit(":b", 1)[1]), tag))
            for number, tag in sorted(tags, reverse=True)[keep:]:
                if tag == space["image"]:
                    continue
                try:
                    eng.remove_image(tag)
                except Exception as exc:  # an image still used by a container is kept
                    result.images.append((tag, str(exc)))
                    continue
                result.images.append((tag, None))
        result.logs = prune_logs(settings, st)
        served = {s["id"]: s["commit"] for s in st.list_spaces()}
    finally:
        st.close()
    result.static = staticsite.prune(settings.home, served)
    return result


def prune_logs(settings, st: state_mod.State) -> list[str]:
    """Removes old build logs, run-log copies and the logs of deleted Spaces; returns them
    relative to SPACEHOOKS_HOME (folders with a trailing /)."""
    home = Path(settings.home)
    keep_builds, keep_copies = int(settings["run.keep_builds"]), int(settings["logs.keep"])
    spaces = {s["id"]: s for s in st.list_spaces()}
    gone: list[Path] = []
    for space_id, space in spaces.items():
        builds = st.builds(space_id, limit=1_000_000)
        kept = {b["id"] for b in builds[:keep_builds]} | {space.get("build_id")}
        kept |= {b["id"] for b in builds if b["status"] not in state_mod.FINAL}  # still being written
        folder = st.build_log_path(space_id, 0).parent
        for path in sorted(folder.glob("*.log"), key=_number):
            if _number(path) >= 0 and _number(path) not in kept:
                gone.append(path)
        run_log = st.run_log_path(space_id)
        gone += [p for p in sorted(run_log.parent.glob(run_log.name + ".*"), key=_number)
                 if _number(p) > keep_copies]
    # folders of Spaces that were deleted, or whose delete did not finish
    for folder in sorted((home / "logs" / "builds").glob("*/*")):
        if folder.is_dir() and f"{folder.parent.name}/{folder.name}" not in spaces:
            gone.append(folder)
    for path in sorted((home / "logs" / "run").glob("*/*.log*")):
        if f"{path.parent.name}/{path.name.split('.log')[0]}" not in spaces:
            gone.append(path)
    removed = []
    for path in gone:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"{path.relative_to(home)}/")
        else:
            path.unlink(missing_ok=True)
            removed.append(str(path.relative_to(home)))
    return removed


def _number(path: Path) -> int:
    """The build id of `<id>.log`, the copy number of `x.log.<n>`; -1 for other names."""
    text = path.stem if path.suffix == ".log" else path.suffix.lstrip(".")
    return int(text) if text.isdigit() else -1


def rollback(settings, space_id: str, build_id: int | None = None) -> StageResult:
    """Deploy an earlier build again; the result's note names it."""
    st = _open(settings)
    try:
        space = queue_mod.require_space(st, space_id)
        candidates = [b for b in st.builds(space_id, limit=200)
                      if b["status"] == state_mod.SUCCEEDED and b["id"] != space["build_id"]
                      and (b["image"] or spaceconfig.is_static(b["config"]))]
        if build_id is not None:
            candidates = [b for b in candidates if b["id"] == build_id]
        else:
            candidates = [b for b in candidates if b["id"] < (space["build_id"] or 0)]
        if not candidates:
            raise SpaceError(f"{space_id}: no earlier successful build" + (f" #{build_id}" if build_id else ""),
                             hint=f"see `spacehooks status {space_id}` for its builds")
        target = candidates[0]
    finally:
        st.close()
    if target["image"] and not engine.get(settings).image_exists(target["image"]):
        raise SpaceError(f"the image of build #{target['id']} was removed by gc",
                         hint=f"rebuild instead: spacehooks rebuild {space_id}")
    runner.deploy(settings, space_id, target["image"], target["id"], target["commit"], target["config"])
    return stage_of(settings, space_id, note=f"rolling {space_id} back to build #{target['id']} ({target['commit'][:12]})")


