"""The fence every build's RUN steps run inside: a cgroup of the build's own, and the limits
and privileges passed with Podman's build call.

Podman 4.3's build API passes memory, swap and CPU limits to each RUN step, but has no
process limit, and a ulimit on processes does not bind root (RUN steps run as root). Its
`cgroupparent` becomes the step's exact cgroup path, so spacehooks makes a cgroup per build
with `pids.max` and the memory limit and lets runc create each step's cgroup inside it:
limits on a parent bind everything below it. Afterwards the parent's counters tell whether
a failed step hit a limit. Needs root on the Podman host (the worker runs there as root).

Nothing in Podman 4.3 caps what a RUN step writes (its overlay on ext4 has no size option), so
a watchdog measures each running step's own layer and cache mounts every WATCH_SECONDS (or four
times what a measurement took) and kills the step past build.disk_mb: a step can overshoot by
what it writes in that time.
"""
from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from pathlib import Path

from spacehooks import buildmounts
from spacehooks.errors import SpaceError

ROOT = Path("/sys/fs/cgroup")
TOP = "spacehooks-build"
STEP = "run"  # runc makes and removes it for each RUN step
V1_CONTROLLERS = ("pids", "memory", "cpu", "cpuacct", "cpuset", "blkio", "devices", "freezer", "systemd")
# Below the default weight (1024): when a build and the gateway or a Space want the same
# core, the build waits.
CPU_SHARES = 256
# Capabilities RUN steps keep: what apt, dpkg and pip need as root (owning and moving files,
# apt's switch to its _apt user). Everything else Podman would give is dropped.
DROP_CAPS = ["CAP_AUDIT_WRITE", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
             "CAP_SETPCAP", "CAP_SYS_CHROOT"]


WATCH_SECONDS = 1.0


def _unified() -> bool:
    return (ROOT / "cgroup.controllers").exists()


def _write(path: Path, value) -> None:
    path.write_text(f"{value}\n")


class BuildCgroup:
    """The cgroup one build's RUN steps run in (`with BuildCgroup(settings, space, build):`)."""

    def __init__(self, settings, space_id: str, build_id: int):
        self.memory_mb = int(settings["build.memory_mb"])
        self.cpus = float(settings["build.cpus"])
        self.pids = int(settings["build.pids"])
        self.disk_mb = int(settings["build.disk_mb"])
        # a random part: two servers on one host (or test runs) may build the same Space and number
        self.rel = f"{TOP}/{buildmounts.space_key(space_id)}-b{build_id}-{secrets.token_hex(4)}"
        self.disk_hit = False
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watch_disk, name=f"build-disk-{build_id}", daemon=True)

    def __enter__(self) -> "BuildCgroup":
        try:
            if _unified():
                self._make_v2()
            else:
                self._make_v1()
        except OSError as exc:
            self.remove()
            raise SpaceError(f"cannot make the build's cgroup {self.rel} ({exc.strerror or exc})",
                             hint="the worker must run as root on the Podman host") from exc
        if self.disk_mb > 0:
            self._watch.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._watch.is_alive():
            self._watch.join(10)
        # a build stopped (superseded, timed out) leaves Podman running its step: end it here
        self._kill_step()
        self.remove()

    def _kill_step(self) -> None:
        for _ in range(3):  # processes forked while killing are killed next round
            for pid in self._step_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def _step_pids(self) -> list[int]:
        folder = ROOT / self.rel / STEP if _unified() else ROOT / "pids" / self.rel / STEP
        try:
            return [int(p) for p in (folder / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def _watch_disk(self) -> None:
        pause = WATCH_SECONDS
        while not self._stop.wait(pause):
            pids = self._step_pids()
            started = time.monotonic()
            written = step_writes(pids[0]) if pids else 0
            # a step with many files takes longer to measure: the watchdog stays under a fifth of a core
            pause = max(WATCH_SECONDS, 4 * (time.monotonic() - started))
            if written > self.disk_mb * 1024 * 1024:
                self.disk_hit = True
                self._kill_step()

    def _make_v1(self) -> None:
        top_cpu = ROOT / "cpu" / TOP
        top_cpu.mkdir(mode=0o755, exist_ok=True)
        _write(top_cpu / "cpu.shares", CPU_SHARES)
        pids, memory = ROOT / "pids" / self.rel, ROOT / "memory" / self.rel
        for folder in (pids, memory):
            folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.pids > 0:
            _write(pids / "pids.max", self.pids)
        if self.memory_mb > 0:
            _write(memory / "memory.limit_in_bytes", self.memory_mb * 1024 * 1024)
            if (memory / "memory.memsw.limit_in_bytes").exists():  # no swapping past the limit
                _write(memory / "memory.memsw.limit_in_bytes", self.memory_mb * 1024 * 1024)

    def _make_v2(self) -> None:
        # cgroup v2 (not on this project's test machines): limits in the unified tree, with the
        # controllers handed down to the folders below.
        folder = ROOT / self.rel
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        for parent in (ROOT, ROOT / TOP, folder):
            _write(parent / "cgroup.subtree_control", "+pids +memory +cpu")
        _write(ROOT / TOP / "cpu.weight", max(1, CPU_SHARES * 100 // 1024))
        if self.pids > 0:
            _write(folder / "pids.max", self.pids)
        if self.memory_mb > 0:
            _write(folder / "memory.max", self.memory_mb * 1024 * 1024)
            _write(folder / "memory.swap.max", 0)

    def confinement(self) -> dict:
        """The build request's fields for every RUN step (engine.BuildRequest)."""
        return {"cgroup_parent": f"/{self.rel}/{STEP}", "drop_caps": tuple(DROP_CAPS), "cpus": max(self.cpus, 0.0)}

    def _read(self, controller: str, name: str) -> str:
        folder = ROOT / self.rel if _unified() else ROOT / controller / self.rel
        try:
            return (folder / name).read_text()
        except OSError:
            return ""

    def _counter(self, controller: str, name: str, key: str) -> int:
        for line in self._read(controller, name).splitlines():
            words = line.split()
            if len(words) == 2 and words[0] == key and words[1].isdigit():
                return int(words[1])
        return 0

    def _number(self, controller: str, name: str) -> int:
        text = self._read(controller, name).strip()
        return int(text) if text.isdigit() else 0

    def limit_hit(self, error: str) -> str | None:
        """Which limit the failed RUN step ran into, in words naming the setting; None when none.

        On cgroup v1 the kernel counts a refused fork and an OOM kill in the step's own cgroup,
        gone with the step; the build's cgroup keeps its peak of processes and of memory."""
        if self.disk_hit:
            return (f"a build step was stopped for writing more than the build's disk limit "
                    f"(build.disk_mb = {self.disk_mb} MB)")
        if self.pids > 0 and (self._counter("pids", "pids.events", "max")
                              or self._number("pids", "pids.peak") >= self.pids):
            return f"a build step reached the build's process limit (build.pids = {self.pids})"
        if _unified():
            memory_hit = self._counter("memory", "memory.events", "oom_kill")
        else:  # the limit reached (to within 2%) and a step killed (SIGKILL: exit status 137)
            peak = self._number("memory", "memory.max_usage_in_bytes")
            memory_hit = peak >= self.memory_mb * 1024 * 1024 * 0.98 and error.rstrip().endswith("137")
        if self.memory_mb > 0 and memory_hit:
            return (f"a build step was killed for using all the build's memory "
                    f"(build.memory_mb = {self.memory_mb} MB)")
        return None

    def remove(self) -> None:
        """Remove the build's folders (each RUN step's own is gone with its container)."""
        folders = [ROOT / self.rel] if _unified() else [ROOT / c / self.rel for c in V1_CONTROLLERS]
        for folder in folders:
            for path in (folder / STEP, folder):
                try:
                    os.rmdir(path)
                except OSError:
                    pass


def _du(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def step_writes(pid: int) -> int:
    """Bytes a running RUN step has written: its own overlay layer and its cache mounts."""
    total = 0
    try:
        lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, kind = left.split(), right.split()
        if len(fields) < 5 or len(kind) < 3:
            continue
        root, mount_point = fields[3], fields[4].replace("\\040", " ")
        if mount_point == "/" and kind[0] == "overlay":
            for option in kind[2].split(","):
                if option.startswith("upperdir="):
                    total += _du(option.removeprefix("upperdir="))
        elif "/buildah-cache/" in root:  # seen through the step's own root: no host path guessed
            total += _du(f"/proc/{pid}/root{mount_point}")
    return total
