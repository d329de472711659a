"""Space images: gc of old builds and rollback to an earlier build's image."""
from __future__ import annotations

from spacehooks import builder, podman, runner
from spacehooks import queue as queue_mod
from spacehooks import state as state_mod
from spacehooks.admin import Echo, _open, _report_stage
from spacehooks.errors import SpaceError


def gc(settings, echo: Echo) -> int:
    """Remove Space images beyond the newest run.keep_builds per Space (the running one stays)."""
    keep = settings["run.keep_builds"]
    st = _open(settings)
    client = podman.client(settings)
    removed = 0
    try:
        runner.reap(settings, st)
        for space in st.list_spaces():
            tags = []
            for image in client.images.list(name=builder.image_repo(space["id"])):
                for tag in image.tags:
                    if tag.startswith(builder.image_repo(space["id"]) + ":b"):
                        tags.append((int(tag.rsplit(":b", 1)[1]), tag))
            for number, tag in sorted(tags, reverse=True)[keep:]:
                if tag == space["image"]:
                    continue
                try:
                    client.images.remove(tag)
                except Exception as exc:  # an image still used by a container is kept
                    echo(f"kept {tag}: {exc}")
                    continue
                removed += 1
                echo(f"removed {tag}")
    finally:
        st.close()
    echo(f"{removed} old image(s) removed")
    return removed


def rollback(settings, space_id: str, build_id: int | None, echo: Echo) -> None:
    st = _open(settings)
    try:
        space = queue_mod.require_space(st, space_id)
        candidates = [b for b in st.builds(space_id, limit=200)
                      if b["status"] == state_mod.SUCCEEDED and b["id"] != space["build_id"]
                      and (b["image"] or b["config"].get("sdk") == "static")]
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
    if target["image"] and not podman.client(settings).images.exists(target["image"]):
        raise SpaceError(f"the image of build #{target['id']} was removed by gc",
                         hint=f"rebuild instead: spacehooks rebuild {space_id}")
    echo(f"rolling {space_id} back to build #{target['id']} ({target['commit'][:12]})")
    runner.deploy(settings, space_id, target["image"], target["id"], target["commit"], target["config"])
    _report_stage(settings, space_id, echo)


