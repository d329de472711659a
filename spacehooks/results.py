"""What admin operations return: plain dataclasses of str, int, float, bool, lists and dicts.

The operations (admin, images, limits, doctor, gpu, the sleeper's sleep time, storage_admin,
duplicate) print nothing:
the CLI formats each result in one place, and an HTTP API serialises it with `to_json`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class SpaceRow:
    """One line of `spacehooks spaces`."""
    id: str
    stage: str
    commit: str | None
    port: int | None
    hardware: str | None


@dataclass
class BuildRow:
    id: int
    status: str
    commit: str
    pusher: str
    error: str | None


@dataclass
class SpaceStatus:
    id: str
    stage: str
    commit: str | None
    build_id: int | None
    container: str | None
    port: int | None
    hardware: str | None
    error: str | None
    builds: list[BuildRow]
    podman_down: str | None = None  # the service's address when it does not answer


@dataclass
class StageResult:
    """A Space's stage after an operation that started, stopped or replaced its container.
    `error` set means the operation did not bring it where it was asked to."""
    space_id: str
    stage: str
    error: str | None = None
    note: str | None = None  # what was done first (a rollback's target, say)
    admitted: tuple = ()  # Spaces that were waiting for room and started once this freed it


@dataclass
class BuildQueued:
    space_id: str
    build_id: int
    no_cache: bool = False


@dataclass
class Deleted:
    space_id: str
    repo_path: str  # left alone
    admitted: tuple = ()  # as StageResult's


@dataclass
class KeyChanged:
    """A secret or variable set or deleted; a running Space restarts to see it."""
    space_id: str
    kind: str  # "secret" or "variable"
    key: str
    action: str  # "set" or "deleted"
    restarted: str | None = None  # the stage after the restart, None when it did not run


@dataclass
class HardwareSet:
    space_id: str
    flavor: str
    stage: str  # before the change
    restarted: bool


@dataclass
class LimitsSet:
    space_id: str
    limits: dict  # the Space's own overrides; empty: all from its flavor
    restarted: str | None = None


@dataclass
class LimitRow:
    key: str
    value: int | float | str
    source: str


@dataclass
class SleepTimeSet:
    space_id: str
    seconds: int  # -1: never


@dataclass
class Check:
    """One of doctor's checks: `text` says what is fine, or (with `fix`) what is wrong."""
    ok: bool
    text: str
    fix: str = ""


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)
    note: str = ""  # why the checks stopped early, if they did

    @property
    def problems(self) -> int:
        return sum(not c.ok for c in self.checks)


@dataclass
class GcResult:
    images: list[tuple[str, str | None]] = field(default_factory=list)  # (tag, why kept; None: removed)
    logs: list[str] = field(default_factory=list)  # removed, relative to SPACEHOOKS_HOME; folders end in /
    static: list[str] = field(default_factory=list)  # static deploy folders removed, likewise

    @property
    def images_removed(self) -> int:
        return sum(why is None for _, why in self.images)

    @property
    def total(self) -> int:
        return self.images_removed + len(self.logs) + len(self.static)

    def counts(self) -> list[str]:
        """The three count lines the CLI ends with and the worker's scheduled gc logs."""
        return [f"{self.images_removed} old image(s) removed", f"{len(self.logs)} old log(s) removed",
                f"{len(self.static)} old static deploy(s) removed"]


@dataclass
class FlavorRow:
    """One line of `hardware list`."""
    name: str
    cpus: float
    memory_mb: int
    gpus: int
    gpu_kind: str | None
    shared: bool
    availability: str


@dataclass
class CdiDevice:
    name: str
    holders: list[str]


@dataclass
class CdiSpecRow:
    """One CDI spec file of `gpu list`, with its problems (message, fix) and devices."""
    path: str
    kind: str | None
    version: str | None
    loadable: bool
    problems: list[tuple[str, str]]
    devices: list[CdiDevice]


@dataclass
class GpuListing:
    podman_version: str
    cdi_dirs: list[str]
    specs: list[CdiSpecRow]


@dataclass
class CdiGenerated:
    path: str | None  # None: not written (the spec is only shown)
    cdi_version: str
    devices: list[str]
    control: list[str]  # device nodes every GPU container shares
    driver_files: int  # mounted read-only
    spec: dict
    ignored: list[str] = field(default_factory=list)  # other specs of the kind that Podman does not load


@dataclass
class StorageChanged:
    """`storage set` (tier given) or `storage remove` (removed: the tier it had)."""
    space_id: str
    tier: str | None  # the tier it has now; None after a remove
    size_mb: int | None
    stage: str
    restarted: str | None = None  # the stage after a restart, None when it did not run
    removed: str | None = None


@dataclass
class StorageCopied:
    """`storage export` (to a tar) or `storage import` (from one)."""
    space_id: str
    file: str
    bytes: int
    changed_while_read: bool = False  # export of a Space that wrote meanwhile: the copy is kept
    restarted: str | None = None


@dataclass
class StorageRow:
    space_id: str
    tier: str
    size_mb: int
    slot: int
    used_mb: float | None  # None: not mounted now
    allocated_mb: float  # what its sparse image holds of the host's disk


@dataclass
class Duplicated:
    from_id: str
    to_id: str
    repo: str
    commit: str  # the new commit setting duplicated_from
    variables: list[str]
    secrets_to_set: list[str]  # the original's secrets, never copied
    hardware: str | None
    storage: str | None
    private: bool
    output: list[str] = field(default_factory=list)  # what creating the repository and the push said


def to_json(result) -> object:
    """Plain JSON data (dicts, lists, str, numbers) of a result, a list of results or a dict."""
    if dataclasses.is_dataclass(result):
        return {k: to_json(v) for k, v in dataclasses.asdict(result).items()}
    if isinstance(result, dict):
        return {str(k): to_json(v) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return [to_json(v) for v in result]
    return result
