"""What the machine has against what the Spaces' flavors take: memory, CPUs, GPUs, and disk
for storage. A Space whose flavor does not fit waits in WAITING_CAPACITY (runner.py) with a
message saying what it waits for, and starts when room frees (admission.py).

A Space holds its flavor's memory and CPUs from its start until it stops, sleeps, is paused
or deleted; static Spaces hold nothing (the gateway serves them). Memory is the flavor's
limit, not what the app uses now: the limits are what the kernel enforces, so flavors that
fit together cannot push the machine into swapping or the OOM killer choosing a victim.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from spacehooks import stages
from spacehooks.push import spacekeys
from spacehooks.run import gpu
from spacehooks.run import storage
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError

WAITING = stages.WAITING_CAPACITY
OVERCOMMIT = {"memory": 1.0, "cpus": 4.0, "storage": 1.0}


def ratio(settings, key: str) -> float:
    return float({**OVERCOMMIT, **settings["capacity.overcommit"]}[key])


def machine(settings) -> dict:
    """Memory (MB) and CPUs the Spaces may share before overcommit: settings, else the machine's."""
    memory = settings["capacity.memory_mb"]
    if not memory:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) // 1024
    cpus = settings["capacity.cpus"] or len(os.sched_getaffinity(0))
    return {"memory_mb": int(memory), "cpus": float(cpus)}


def _holds(space: dict) -> bool:
    return space["stage"] in stages.STARTED and not spacekeys.is_static(space.get("config") or {})


def flavor_needs(settings, space: dict) -> dict:
    """Memory and CPUs the Space's container is given: its flavor with its own overrides."""
    name = space.get("hardware") or settings["run.default_hardware"]
    spec = gpu.flavor(settings, name)
    own = space.get("limits") or {}
    return {"memory_mb": int(own.get("memory_mb", spec["memory_mb"])), "cpus": float(own.get("cpus", spec["cpus"])),
            "gpus": spec["gpus"], "gpu_kind": spec["gpu_kind"], "shared": spec["shared"], "flavor": name}


def usage(settings, st: state_mod.State, exclude: str | None = None) -> dict:
    used = {"memory_mb": 0, "cpus": 0.0, "spaces": []}
    for space in st.list_spaces():
        if space["id"] == exclude or not _holds(space):
            continue
        needs = flavor_needs(settings, space)
        used["memory_mb"] += needs["memory_mb"]
        used["cpus"] += needs["cpus"]
        used["spaces"].append(space["id"])
    return used


def never_fits(settings, space: dict) -> str | None:
    """Why the Space cannot start on this machine even when nothing else runs, or None."""
    needs, have = flavor_needs(settings, space), machine(settings)
    for key, unit in (("memory_mb", "MB of memory"), ("cpus", "CPUs")):
        room = have[key] * ratio(settings, key.removesuffix("_mb"))
        if needs[key] > room:
            return (f"hardware {needs['flavor']} needs {_num(needs[key])} {unit}; this machine gives Spaces "
                    f"{_num(room)} (capacity.overcommit {key.removesuffix('_mb')} {ratio(settings, key.removesuffix('_mb')):g})")
    return None


def shortfall(settings, st: state_mod.State, space: dict) -> str | None:
    """What the Space waits for before it can start ("waiting for ..."), or None if it fits."""
    needs, have = flavor_needs(settings, space), machine(settings)
    used = usage(settings, st, exclude=space["id"])
    for key, unit in (("memory_mb", "MB of memory"), ("cpus", "CPUs")):
        room = have[key] * ratio(settings, key.removesuffix("_mb"))
        free = room - used[key]
        if needs[key] > free:
            return (f"waiting for {_num(needs[key])} {unit}: {_num(max(free, 0))} free of {_num(room)} "
                    f"(in use by {', '.join(used['spaces'])})")
    if needs["gpus"]:
        available = gpu.host_devices(settings).get(needs["gpu_kind"], [])
        if len(available) >= needs["gpus"]:
            try:
                gpu._choose(st.gpu_holdings(), space["id"], needs["flavor"], gpu.flavor(settings, needs["flavor"]),
                            available)
            except SpaceError:
                holders = sorted({r["space_id"] for r in st.gpu_holdings() if r["space_id"] != space["id"]})
                free = sum(1 for d in available if not any(r["device"] == d for r in st.gpu_holdings()))
                return (f"waiting for {needs['gpus']} GPU(s) of kind {needs['gpu_kind']}: {free} of "
                        f"{len(available)} free (in use by {', '.join(holders)})")
    return None


def defer(settings, st: state_mod.State, space: dict, serving: bool, **deploy) -> str | None:
    """None when the Space may start now; else why not, with its stage set: a serving Space keeps
    serving (e.g. a bigger flavor), another waits in WAITING_CAPACITY holding what it is to run
    (`deploy`: image, build_id, commit, config), or fails when it could never fit."""
    never = never_fits(settings, space)
    wait = never or shortfall(settings, st, space)
    if wait and serving:
        stages.change(st, space["id"], stages.RUNNING, "no room", error=f"build #{deploy['build_id']} not started: {wait}")
    elif never:
        stages.change(st, space["id"], stages.RUNTIME_ERROR, "never fits", error=wait, container=None, port=None,
                      **deploy)
    elif wait:
        stages.change(st, space["id"], WAITING, "no room", error=wait, container=None, port=None, **deploy)
    return wait


@contextmanager
def admission(settings):
    """One Space at a time between its check and its stage showing it started: two Spaces
    starting at once never both take the last room."""
    path = Path(settings.home) / "capacity.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def storage_disk(settings) -> dict:
    """Disk under SPACEHOOKS_HOME for storage: committed tier sizes against free space plus
    what the sparse images already hold."""
    st = state_mod.open(settings)
    try:
        rows = st.storage_all()
    finally:
        st.close()
    info = os.statvfs(settings.home)
    free = info.f_bavail * info.f_frsize / storage.MB
    allocated = sum(storage.allocated_mb(settings, r["space_id"]) for r in rows)
    room = (free + allocated) * ratio(settings, "storage")
    return {"committed_mb": sum(r["size_mb"] for r in rows), "room_mb": room, "rows": rows}


def check_storage(settings, space_id: str, size_mb: int) -> None:
    disk = storage_disk(settings)
    others = sum(r["size_mb"] for r in disk["rows"] if r["space_id"] != space_id)
    if others + size_mb > disk["room_mb"]:
        raise SpaceError(f"no room for {storage.describe_mb(size_mb)} of storage for {space_id}: storage given to "
                         f"Spaces would reach {_num(others + size_mb)} MB, the disk under {settings.home} has room "
                         f"for {_num(disk['room_mb'])} MB (capacity.overcommit storage {ratio(settings, 'storage'):g})",
                         hint="free disk space, remove storage no Space needs, or raise capacity.overcommit storage")


def room(settings) -> dict:
    """What `hardware list` shows after the flavors: what the running Spaces use and what is free
    of memory, CPUs (each with the machine's figure and its overcommit) and storage."""
    have = machine(settings)
    st = state_mod.open(settings)
    try:
        used = usage(settings, st)
        waiting = [s["id"] for s in st.list_spaces() if s["stage"] == WAITING]
    finally:
        st.close()
    out = {"spaces": used["spaces"], "waiting": waiting}
    for key, label in (("memory_mb", "memory"), ("cpus", "cpus")):
        total = have[key] * ratio(settings, label)
        out[label] = {"used": used[key], "total": total, "free": total - used[key], "machine": have[key],
                      "overcommit": ratio(settings, label)}
    disk = storage_disk(settings)
    out["storage"] = {"used": disk["committed_mb"], "total": disk["room_mb"]}
    return out


def room_lines(out: dict) -> list[str]:
    """`room`'s figures as the lines `hardware list` prints."""
    lines = []
    for label, unit in (("memory", " MB"), ("cpus", "")):
        r = out[label]
        lines.append(f"{label:8} used {_num(r['used'])}{unit} of {_num(r['total'])}{unit}, free {_num(r['free'])}{unit}"
                     f" (machine {_num(r['machine'])}, overcommit {r['overcommit']:g})")
    disk = out["storage"]
    lines.append(f"{'storage':8} given {_num(disk['used'])} MB of {_num(disk['total'])} MB, "
                 f"free {_num(disk['total'] - disk['used'])} MB")
    lines.append(f"{len(out['spaces'])} Space(s) running"
                 + (f"; waiting for room: {', '.join(out['waiting'])}" if out["waiting"] else ""))
    return lines


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
