"""Persistent /data storage per Space: a sparse ext4 image of the tier's size under
SPACEHOOKS_HOME/storage, loop-mounted by the server (root) and bind-mounted at /data.

The file system's own size is the quota: a write past it fails inside the Space with ENOSPC
("No space left on device") and touches neither the host's disk beyond the image nor another
Space's image. Space containers normally get a host id range Podman picks per container
(userns=auto), so blue and green of one Space would see each other's files as foreign; a
Space with storage instead gets a fixed range of its own (storage.uid_base + slot * 65536,
the slot recorded in the store), the same for all its containers and no other Space's.
runc 1.1 ignores Podman's `idmap` mount option, and `U` (chown at each start) would take
the files away from the container still serving during a swap: both measured, see README.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from spacehooks import proc
from spacehooks import state as state_mod
from spacehooks.engine.spec import DataMount, IdMap
from spacehooks.errors import SpaceError

TARGET = "/data"
HF_HOME = "/data/.huggingface"
RANGE = 65536
APP_UID = 1000
MB = 1024 * 1024
# noinit_itable: the kernel does not zero the inode tables behind mkfs's back (see mkfs below);
# discard: a file deleted in /data gives its blocks back to the host's disk (holes punched)
MOUNT_OPTIONS = "loop,nosuid,nodev,noinit_itable,discard"
_SPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def _check_id(space_id: str) -> tuple[str, str]:
    if not _SPACE_ID.fullmatch(space_id) or ".." in space_id:
        raise SpaceError(f"{space_id!r} is not a Space id", hint="give it as owner/name")
    owner, _, name = space_id.partition("/")
    return owner, name


def tiers(settings) -> dict:
    return dict(settings["storage.tiers"])


def tier_size(settings, tier: str) -> int:
    known = tiers(settings)
    if tier not in known:
        raise SpaceError(f"unknown storage tier {tier!r}; known: "
                         + ", ".join(f"{n} ({describe_mb(s)})" for n, s in sorted(known.items(), key=lambda i: i[1])),
                         hint="pick one of those, or define it under `storage.tiers` in the server configuration")
    return int(known[tier])


def describe_mb(size_mb: int) -> str:
    if size_mb >= 1024 * 1024 and size_mb % (1024 * 1024) == 0:
        return f"{size_mb // (1024 * 1024)} TB"
    if size_mb >= 1024 and size_mb % 1024 == 0:
        return f"{size_mb // 1024} GB"
    return f"{size_mb} MB"


def image_path(settings, space_id: str) -> Path:
    owner, name = _check_id(space_id)
    return Path(settings.home) / "storage" / "images" / owner / f"{name}.ext4"


def mount_path(settings, space_id: str) -> Path:
    owner, name = _check_id(space_id)
    return Path(settings.home) / "storage" / "mnt" / owner / name


def slots(settings) -> int:
    """How many id ranges fit between storage.uid_base and the first /etc/subuid range above it."""
    base = settings["storage.uid_base"]
    limit = 2 ** 32 - 1
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                start, count = int(parts[1]), int(parts[2])
                if start <= base < start + count:
                    raise SpaceError(f"storage.uid_base {base} lies inside {path}'s range {line.strip()!r}",
                                     hint="set storage.uid_base below or above every subordinate range")
                if start > base:
                    limit = min(limit, start)
    return max(0, (limit - base) // RANGE)


def host_base(settings, record: dict) -> int:
    return settings["storage.uid_base"] + int(record["slot"]) * RANGE


def host_uid(settings, record: dict) -> int:
    return host_base(settings, record) + APP_UID


def record(settings, space_id: str) -> dict | None:
    st = state_mod.open(settings)
    try:
        return st.storage_of(space_id)
    finally:
        st.close()


def is_mounted(path: Path) -> bool:
    target = str(path)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        point = line.split(" ")[4].encode().decode("unicode_escape") if len(line.split(" ")) > 4 else ""
        if point == target:
            return True
    return False


def _make_dirs(path: Path) -> None:
    """Folders under SPACEHOOKS_HOME/storage: root's alone (0700), whatever the umask."""
    top = Path("/")
    for part in path.parts[1:]:
        top = top / part
        if not top.exists():
            top.mkdir(mode=0o700)
            os.chmod(top, 0o700)


def _mount_point(mnt: Path) -> None:
    """A mount point is root's and mode 000 while nothing is mounted on it (whatever the umask),
    so an app never writes to the host's disk in its place."""
    if not mnt.exists():
        mnt.mkdir(mode=0)
    if not is_mounted(mnt):
        os.chmod(mnt, 0)


def ensure_mounted(settings, space_id: str, rec: dict) -> Path:
    """The Space's file system, made (first time) or grown (bigger tier) and mounted; idempotent.

    Called before every container start (restore after a reboot included): a mount point
    without its file system is mode 000 and root's, so an app never writes to the host's disk."""
    image, mnt = image_path(settings, space_id), mount_path(settings, space_id)
    size = int(rec["size_mb"]) * MB
    uid = host_uid(settings, rec)
    _make_dirs(image.parent)
    _make_dirs(mnt.parent)
    _mount_point(mnt)
    if not image.exists():
        fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)  # sparse: the host's disk holds only what is written
        finally:
            os.close(fd)
        try:
            # lazy inits: the sparse file reads as zeros already, and zeroing the journal and
            # inode tables would make the host hold ~1 GB (journal) to ~16 GB (1 TB's inode tables)
            proc.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                      f"root_owner={uid}:{uid},lazy_itable_init=1,lazy_journal_init=1", str(image)], timeout=300)
        except SpaceError:
            image.unlink(missing_ok=True)
            raise
        fresh = True
    else:
        fresh = False
    if not is_mounted(mnt):
        proc.run(["mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(mnt)], timeout=120)
    if os.stat(mnt).st_uid != uid:  # its slot changed (a state rebuild): the files follow the ids
        _adopt(mnt, os.stat(mnt).st_uid - APP_UID, host_base(settings, rec))
    if fresh:
        lost = mnt / "lost+found"  # the Hub's /data starts empty; e2fsck makes it again if it needs it
        if lost.is_dir():
            lost.rmdir()
    if os.stat(image).st_size < size:
        _grow(image, size)
    return mnt


def _adopt(mnt: Path, old_base: int, new_base: int) -> None:
    """Shift every owner in the file system from one id range to another. The Space's old
    container may still run and swap a folder for a link meanwhile: os.fwalk and dir_fd
    relative lchown never follow one out of /data (set-id bits that chown drops stay dropped)."""
    def shifted(value: int) -> int:
        return value - old_base + new_base if old_base <= value < old_base + RANGE else new_base + APP_UID

    for _, dirs, files, fd in os.fwalk(mnt, follow_symlinks=False):
        for name in dirs + files:
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                os.chown(name, shifted(info.st_uid), shifted(info.st_gid), dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile
                continue
    info = os.lstat(mnt)
    os.chown(mnt, shifted(info.st_uid), shifted(info.st_gid), follow_symlinks=False)


def recover(settings, known: set, echo) -> list[str]:
    """After `state rebuild`: record again the storage whose image outlived the store. The tier is
    the one of the image's size; the slot the one its files are owned by when still free."""
    found, count = [], slots(settings)  # /etc/subuid and /etc/subgid read once
    for image in sorted((Path(settings.home) / "storage" / "images").glob("*/*.ext4")):
        space_id = f"{image.parent.name}/{image.name.removesuffix('.ext4')}"
        if space_id not in known:
            continue
        size_mb = image.stat().st_size // MB
        tier = next((n for n, s in tiers(settings).items() if s == size_mb), f"{size_mb}MB")
        mnt = mount_path(settings, space_id)
        if not is_mounted(mnt):
            _make_dirs(mnt.parent)
            _mount_point(mnt)
            proc.run(["mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(mnt)], timeout=120)
        prefer = (os.stat(mnt).st_uid - APP_UID - settings["storage.uid_base"]) // RANGE
        st = state_mod.open(settings)
        try:
            rec = st.storage_assign(space_id, tier, size_mb, count, prefer=prefer)
        finally:
            st.close()
        ensure_mounted(settings, space_id, rec)
        found.append(space_id)
        echo(f"{space_id}: {tier} storage ({describe_mb(size_mb)}) recorded again")
    return found


def _grow(image: Path, size: int) -> None:
    with open(image, "r+b") as fh:
        os.ftruncate(fh.fileno(), size)
    device = proc.run(["losetup", "-j", str(image)]).stdout.decode().split(":")[0].strip()
    if device:
        proc.run(["losetup", "-c", device])
        proc.run(["resize2fs", device], timeout=600)
    else:
        proc.run(["resize2fs", str(image)], timeout=600)


def unmount(settings, space_id: str) -> None:
    mnt = mount_path(settings, space_id)
    if is_mounted(mnt):
        try:
            proc.run(["umount", str(mnt)], timeout=120)
        except SpaceError:  # a process still holds it: detach now, the kernel frees it after
            proc.run(["umount", "--lazy", str(mnt)], timeout=120)


def destroy(settings, space_id: str) -> None:
    """Unmount and delete the file system and its record (after its containers are gone)."""
    unmount(settings, space_id)
    image_path(settings, space_id).unlink(missing_ok=True)
    mnt = mount_path(settings, space_id)
    if mnt.exists() and not is_mounted(mnt):
        mnt.rmdir()
    st = state_mod.open(settings)
    try:
        st.storage_forget(space_id)
    finally:
        st.close()


def used_mb(settings, space_id: str) -> float | None:
    mnt = mount_path(settings, space_id)
    if not is_mounted(mnt):
        return None
    info = os.statvfs(mnt)
    return (info.f_blocks - info.f_bfree) * info.f_frsize / MB


def allocated_mb(settings, space_id: str) -> float:
    """What the sparse image takes on the host's disk now."""
    try:
        return os.stat(image_path(settings, space_id)).st_blocks * 512 / MB
    except FileNotFoundError:
        return 0.0


def run_fields(settings, space_id: str) -> dict | None:
    """What a container of the Space gets for its storage, mounted first: RunSpec's `data`
    (/data), its fixed `userns` range (replacing userns_auto) and `env` (HF_HOME); None
    without storage."""
    rec = record(settings, space_id)
    if rec is None:
        return None
    # a cluster keeps /data in the Space's own claim (engine/kubemanifests): no host mount there
    mnt = ensure_mounted(settings, space_id, rec) if settings["engine"] == "podman" else mount_path(settings, space_id)
    return {"data": DataMount(target=TARGET, source=str(mnt), size_mb=int(rec["size_mb"])),
            "userns": IdMap(host_id=host_base(settings, rec), size=RANGE), "userns_auto": False,
            "env": {"HF_HOME": HF_HOME}}
