"""Plain data the engines take and return: what to run, what runs, what was built.

No podman-py, no SQLite, no settings object: a Podman adapter and a Kubernetes one read the
same RunSpec. Every security fence a Space container gets is a field here, so an engine that
cannot honour one has to say so instead of silently dropping it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class FileMount:
    """A file mounted read-only at target: a host file (source) or bytes (content)."""
    target: str
    source: str | None = None
    content: bytes | None = None
    # the container user (uid 1000 in its user namespace) reads it; Podman's `chown` option
    owned_by_user: bool = False


@dataclass(frozen=True)
class DataMount:
    """Persistent storage every container of the Space shares, read-write at target: a host
    folder (source: the Podman engine bind-mounts it) of size_mb (a Kubernetes claim's size)."""
    target: str
    source: str
    size_mb: int


@dataclass(frozen=True)
class IdMap:
    """A fixed user namespace: container ids 0..size-1 are host ids host_id..host_id+size-1,
    uids and gids alike, the same for each container of the Space (blue and green own the
    same files in its DataMount) and no other Space's."""
    host_id: int
    size: int


@dataclass(frozen=True)
class RunSpec:
    """One Space container. env and secrets are disjoint (a name is in one of them); secrets
    are kept apart so an engine can store them separately (a Kubernetes Secret)."""
    name: str
    image: str
    space_id: str
    labels: Mapping[str, str]
    env: Mapping[str, str]
    secrets: Mapping[str, str]
    app_port: int
    host_port: int
    network: str
    memory_mb: int
    cpus: float
    pids: int
    nofile: int
    disk_mb: int
    tmp_mb: int
    log_bytes: int
    files: tuple[FileMount, ...] = ()
    host_ip: str = "127.0.0.1"
    nproc: int = 0  # 0: four times pids
    shm_mb: int = 64
    home: str = "/home/user"
    gpu_devices: tuple[str, ...] = ()  # CDI names, allocated by the caller
    gpus: int = 0
    gpu_kind: str | None = None
    user: str = "1000"
    read_only_root: bool = True
    no_new_privileges: bool = True
    cap_drop: tuple[str, ...] = ("ALL",)
    userns_auto: bool = True  # the engine picks a fresh host range per container
    userns: IdMap | None = None  # a fixed range instead (Spaces with storage)
    data: DataMount | None = None
    init: bool = True
    restart: str = "no"  # supervise.py restarts crashed apps with backoff

    @property
    def nproc_limit(self) -> int:
        return self.nproc or self.pids * 4


@dataclass(frozen=True)
class ContainerState:
    name: str
    status: str  # the engine's word: running, exited, stopped, created, ...
    running: bool
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None
    host_port: int | None = None
    id: str | None = None


@dataclass(frozen=True)
class ContainerStats:
    name: str
    memory_bytes: int
    memory_limit_bytes: int
    cpu_seconds: float


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    created: str | None = None
    size: int = 0


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    interface: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildRequest:
    """Build context/containerfile as tag. RUN steps join network (none: the engine's default,
    on Podman 4.3 the host's network) and run confined: their cgroup under cgroup_parent,
    drop_caps dropped, at most cpus CPUs (0: no CPU limit)."""
    context: Path
    tag: str
    containerfile: str = "Containerfile"
    no_cache: bool = False
    secrets: Mapping[str, bytes] = field(default_factory=dict)
    network: str | None = None
    cgroup_parent: str | None = None
    drop_caps: tuple[str, ...] = ()
    cpus: float = 0
    timeout: float = 3600


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tag: str


@dataclass(frozen=True)
class EngineInfo:
    """What doctor and the GPU checks ask of the engine."""
    name: str
    version: str
    runtime: str = "?"
    cgroup_version: str = "?"
    cgroup_controllers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Readiness:
    """How a started version's wait ended: answering, or failed in `stage` (RUNTIME_ERROR) with
    the reason a user reads (the log tail under it where the app ran)."""
    answering: bool
    stage: str = ""
    reason: str = ""
