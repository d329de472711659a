"""`spacehooks storage`: give a Space persistent /data of a tier, remove it, export and import
it as a tar, list what each Space has. Each operation prints nothing and returns a result
(results.py) that clistorage.py prints and the Hub API hands back; changing storage restarts a running
Space (its containers get the mount and the id range only when created).
"""
from __future__ import annotations

import os
from pathlib import Path

from spacehooks import proc, stages
from spacehooks.run import runner
from spacehooks.run import admission, storage
from spacehooks import state as state_mod
from spacehooks.admin.spaces import _existing
from spacehooks.errors import SpaceError
from spacehooks.results import StorageChanged, StorageCopied, StorageRow

_RESTART_STAGES = (*stages.STARTED, stages.RUNTIME_ERROR)


def _restart(settings, space_id: str) -> tuple[str, str | None]:
    """(its stage now, the stage after a restart or None when it did not run)."""
    stage = _existing(settings, space_id)["stage"]
    if stage not in _RESTART_STAGES:
        return stage, None
    runner.restart(settings, space_id)
    stage = _existing(settings, space_id)["stage"]
    return stage, stage


def set_tier(settings, space_id: str, tier: str) -> StorageChanged:
    """Give the Space storage of `tier` (or grow what it has); never shrinks."""
    _existing(settings, space_id)
    size = storage.tier_size(settings, tier)
    current = storage.record(settings, space_id)
    if current and size < current["size_mb"]:
        raise SpaceError(f"{space_id} has {current['tier']} storage ({storage.describe_mb(current['size_mb'])}); "
                         f"it cannot shrink to {tier} ({storage.describe_mb(size)})",
                         hint=f"export it (`spacehooks storage export {space_id} FILE.tar`), remove it, "
                              f"set {tier} and import the tar")
    from spacehooks.run import capacity
    capacity.check_storage(settings, space_id, size)
    slots = storage.slots(settings)
    st = state_mod.open(settings)
    try:
        rec = st.storage_assign(space_id, tier, size, slots)
    except LookupError as exc:
        raise SpaceError(f"no id range left for {space_id}'s storage: {exc}",
                         hint="lower storage.uid_base or remove storage no Space needs") from exc
    finally:
        st.close()
    storage.ensure_mounted(settings, space_id, rec)
    stage, restarted = _restart(settings, space_id)
    return StorageChanged(space_id, tier, size, stage, restarted)


def loss_note(settings, space_id: str) -> str | None:
    """What removing the Space's storage loses, for the question asked first; None without storage."""
    rec = storage.record(settings, space_id)
    if rec is None:
        return None
    used = storage.used_mb(settings, space_id)
    used_text = f"{used:.1f} MB used" if used is not None else "not mounted now"
    return (f"{space_id}'s {rec['tier']} storage ({storage.describe_mb(rec['size_mb'])}, {used_text}): "
            f"every file the Space wrote under {storage.TARGET} is deleted for good")


def remove(settings, space_id: str) -> StorageChanged:
    """Delete the Space's storage and everything in it; a running Space restarts without it."""
    _existing(settings, space_id)
    rec = storage.record(settings, space_id)
    if rec is None:
        raise SpaceError(f"{space_id} has no storage", hint="see `spacehooks storage list`")
    st = state_mod.open(settings)
    try:
        st.storage_forget(space_id)  # new containers come without /data from here on
    finally:
        st.close()
    stage, restarted = _restart(settings, space_id)
    admission.clear_others(settings, space_id)  # the container that had /data goes before the file system
    storage.destroy(settings, space_id)
    return StorageChanged(space_id, None, None, stage, restarted, removed=rec["tier"])


def export(settings, space_id: str, target: str) -> StorageCopied:
    """A tar of the Space's /data (owners written as uid 1000, as the Space sees them)."""
    _existing(settings, space_id)
    rec = _require(settings, space_id)
    mnt = storage.ensure_mounted(settings, space_id, rec)
    uid = storage.host_uid(settings, rec)
    path = Path(target)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            # read as the Space's own host id, started in /data (the folders above are root's
            # alone): a link the app planted leads nowhere that id cannot read anyway
            # exit 1: a file changed while it was read (the Space runs): the copy is kept, with a note
            changed = proc.run_streams(_as(uid) + ["tar", "--numeric-owner", f"--owner={storage.APP_UID}",
                                                   f"--group={storage.APP_UID}", "--warning=no-file-changed",
                                                   "-cf", "-", "."], stdout=fh, cwd=mnt, ok=(0, 1)) == 1
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    size = path.stat().st_size
    return StorageCopied(space_id, str(path), size, changed)


def import_(settings, space_id: str, source: str) -> StorageCopied:
    """Unpack a tar into the Space's /data (same names replaced, others kept); restarts it."""
    _existing(settings, space_id)
    rec = _require(settings, space_id)
    path = Path(source)
    if not path.is_file():
        raise SpaceError(f"{source}: no such file", hint="give a tar written by `spacehooks storage export`")
    mnt = storage.ensure_mounted(settings, space_id, rec)
    uid = storage.host_uid(settings, rec)
    with open(path, "rb") as fh:
        # unpacked as the Space's host id: what it writes belongs to uid 1000 inside and can
        # land nowhere that id could not write anyway; past the quota tar fails with ENOSPC
        proc.run_streams(_as(uid) + ["tar", "--no-same-owner", "--no-same-permissions", "-xf", "-"],
                         stdin=fh, cwd=mnt)
    stage, restarted = _restart(settings, space_id)
    return StorageCopied(space_id, str(path), path.stat().st_size, restarted=restarted)


def listing(settings) -> list[StorageRow]:
    st = state_mod.open(settings)
    try:
        rows = st.storage_all()
    finally:
        st.close()
    return [StorageRow(r["space_id"], r["tier"], r["size_mb"], r["slot"], storage.used_mb(settings, r["space_id"]),
                       storage.allocated_mb(settings, r["space_id"])) for r in rows]


def _require(settings, space_id: str) -> dict:
    rec = storage.record(settings, space_id)
    if rec is None:
        raise SpaceError(f"{space_id} has no storage", hint=f"give it some: `spacehooks storage set {space_id} small`")
    return rec


def _as(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
