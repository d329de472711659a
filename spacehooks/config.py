"""Server settings: one YAML file, every key declared once here with its default and meaning.

The declaration drives loading, validation and the README table (`spacehooks config-doc`).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, NamedTuple

import yaml


DEFAULT_CONFIG = "/etc/spacehooks/config.yaml"
DEFAULT_HOME = "/var/lib/spacehooks"

# Hub flavors (SPACES.md); memory in MB. Admins may add or override flavors. disk_mb caps what
# a Space writes in its home (app folder included); it lives in memory, so a quarter of it.
HUB_FLAVORS = {
    "cpu-basic": {"cpus": 2, "memory_mb": 16384, "disk_mb": 4096, "gpus": 0},
    "cpu-upgrade": {"cpus": 8, "memory_mb": 32768, "disk_mb": 8192, "gpus": 0},
    "t4-small": {"cpus": 4, "memory_mb": 15360, "disk_mb": 3840, "gpus": 1, "gpu_kind": "nvidia.com/gpu"},
    "t4-medium": {"cpus": 8, "memory_mb": 30720, "disk_mb": 7680, "gpus": 1, "gpu_kind": "nvidia.com/gpu"},
    "l4x1": {"cpus": 8, "memory_mb": 30720, "disk_mb": 7680, "gpus": 1, "gpu_kind": "nvidia.com/gpu"},
    "l4x4": {"cpus": 48, "memory_mb": 190464, "disk_mb": 47616, "gpus": 4, "gpu_kind": "nvidia.com/gpu"},
    "a10g-small": {"cpus": 4, "memory_mb": 15360, "disk_mb": 3840, "gpus": 1, "gpu_kind": "nvidia.com/gpu"},
    "a10g-large": {"cpus": 12, "memory_mb": 47104, "disk_mb": 11776, "gpus": 1, "gpu_kind": "nvidia.com/gpu"},
    "a10g-largex2": {"cpus": 24, "memory_mb": 94208, "disk_mb": 23552, "gpus": 2, "gpu_kind": "nvidia.com/gpu"},
    "a10g-largex4": {"cpus": 48, "memory_mb": 188416, "disk_mb": 47104, "gpus": 4, "gpu_kind": "nvidia.com/gpu"},
    "a100-large": {"cpus": 12, "memory_mb": 145408, "disk_mb": 36352, "gpus": 1, "gpu_kind": "nvidia.com/gpu"},
}


class Setting(NamedTuple):
    key: str          # dotted path in the YAML file
    default: Any
    kind: type | tuple
    help: str


SETTINGS = [
    Setting("repo_root", "/srv/git", str, "Folder holding the bare repositories; a Space's id `owner/name` is its path below it (`owner/name.git`)."),
    Setting("default_owner", "spaces", str, "Owner used for a repository directly under `repo_root`."),
    Setting("deploy_branch", "main", str, "Branch whose pushes are checked and deployed."),
    Setting("check_other_refs", False, bool, "Also check pushes to other branches and tags (never deployed)."),
    Setting("max_file_bytes", 10 * 1024 * 1024, int, "Files larger than this are not read by the checks (README, dependency files and secret scan); a larger README or dependency file is refused."),
    Setting("secret_scan.enabled", True, bool, "Refuse pushes that add hard-coded tokens or keys."),
    Setting("secret_scan.allow_paths", [], list, "Glob patterns of paths the secret scan skips (e.g. `tests/fixtures/*`)."),
    Setting("python_versions", {"3.11": "localhost/spacehooks/python:3.11"}, dict, "Python versions this server builds, each mapped to its base image (made by `spacehooks base-image build`, or a registry image such as `python:3.10-slim`)."),
    Setting("default_python_version", "3.11", str, "Python used when a README sets none (the Hub uses 3.10)."),
    Setting("podman_url", "unix:///run/spacehooks/podman.sock", str, "Podman REST service the builder and runner talk to."),
    Setting("build.concurrency", 1, int, "Builds run at once (always one at a time per Space)."),
    Setting("build.push_log_seconds", 30, int, "How long a push streams its build log (`git push -o wait` streams to the end)."),
    Setting("build.timeout_seconds", 3600, int, "A build running longer is stopped and fails."),
    Setting("build.memory_mb", 4096, int, "Memory a build's RUN steps may use together (a step past it is killed and the build fails naming this limit; 0: no limit)."),
    Setting("build.cpus", 2, (int, float), "CPU cores each RUN step may use; builds also yield the CPU to the gateway and running Spaces (0: no limit)."),
    Setting("build.pids", 1024, int, "Processes a build's RUN steps may run at once, root's included (a pids cgroup; 0: no limit)."),
    Setting("build.disk_mb", 20480, int, "What one RUN step may write (its layer plus the Space's build caches), checked every second; a step past it is stopped and the build fails naming this limit (0: no limit)."),
    Setting("build.ca_bundle", "", str, "CA bundle file given to apt and pip inside builds (for servers behind a TLS-inspecting proxy)."),
    Setting("build.pip_index_url", "", str, "pip index used inside builds (empty: pip's default)."),
    Setting("build.apt_mirror", "", str, "Debian mirror URL used inside builds (empty: the base image's)."),
    Setting("base_image.cache_dir", "/var/cache/spacehooks/images", str, "Where `base-image build` keeps saved base images and downloaded .deb/wheel files; a matching saved image is loaded instead of rebuilt."),
    Setting("run.memory_mb", 16384, int, "Default memory limit of a Space (the Hub's 16 GB)."),
    Setting("run.cpus", 8, (int, float), "Default CPU limit of a Space (the Hub's 8 cores)."),
    Setting("run.pids", 1024, int, "Most processes a Space may run."),
    Setting("run.disk_mb", 4096, int, "What a Space may write in /home/user (its app folder included) when its flavor sets no `disk_mb`; the rest of its file system is read-only. Home and /tmp are memory file systems (fresh at each start, like the Hub's ephemeral disk) and count toward the Space's memory."),
    Setting("run.tmp_mb", 1024, int, "What a Space may write in /tmp (per flavor: `tmp_mb`)."),
    Setting("run.nofile", 4096, int, "Open-file limit in Spaces (must not exceed the host's `ulimit -Hn`)."),
    Setting("run.port_range", [20000, 29999], list, "Loopback ports handed to Space containers."),
    Setting("run.default_hardware", "cpu-basic", str, "Flavor of a new Space."),
    Setting("run.sleep_seconds", 172800, int, "Idle time before a Space sleeps (-1: never); per Space with `sleep-time set`."),
    Setting("run.grace_seconds", 10, (int, float), "After a new version answers, the old container keeps serving open requests this long before it is stopped."),
    Setting("run.keep_builds", 3, int, "Images kept per Space for rollback; `gc` removes older ones."),
    Setting("run.gc_interval_seconds", 21600, (int, float), "How often `serve` and `worker` run `gc` between builds (0: only by hand)."),
    Setting("hardware", {}, dict, "Extra or overriding flavors: `name: {cpus, memory_mb, disk_mb, tmp_mb, gpus, gpu_kind, shared, accelerator}` (`gpu_kind` is a CDI kind such as `nvidia.com/gpu`; `shared: true` lets Spaces of that flavor share GPUs)."),
    Setting("gpu.cdi_dirs", ["/etc/cdi", "/var/run/cdi"], list, "Folders holding CDI specs, later ones overriding earlier ones; must be the folders Podman reads (its defaults are these two)."),
    Setting("gateway.listen", "127.0.0.1:8080", str, "Address the gateway listens on."),
    Setting("gateway.domain", "localhost", str, "Spaces are served at `<owner>-<name>.<domain>`; the gallery at `<domain>`."),
    Setting("gateway.public_url", "http://{host}:8080", str, "How links to Spaces are written; `{host}` is the Space's host name."),
    Setting("gateway.relay", True, bool, "Serve plain requests to running Spaces through the fast relay (httptools) in front of the aiohttp app; false: the app alone takes every request (slower, for comparison or trouble-shooting)."),
    Setting("gateway.sleep_check_seconds", 30, (int, float), "How often the gateway looks for Spaces idle past their sleep time."),
    Setting("logs.max_bytes", 5 * 1024 * 1024, int, "A Space's run log is rotated at this size; a longer build log keeps its first and last half."),
    Setting("logs.keep", 3, int, "Rotated copies of a Space's run log kept (`<id>.log.1` is the newest)."),
    Setting("home_group", "spacehooks", str, "Unix group shared by the git account(s) and the server: `SPACEHOOKS_HOME` and its state database are made group-owned and group-writable (setgid folder), so post-receive can record builds; secrets stay root-only. Empty: leave ownership alone."),
]

_BY_KEY = {s.key: s for s in SETTINGS}


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and full not in _BY_KEY:
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


class Settings:
    """Read-only view: `settings["build.concurrency"]`, plus the two paths."""

    def __init__(self, values: dict, home: Path, path: Path | None):
        self._values = values
        self.home = home
        self.path = path

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    @property
    def flavors(self) -> dict:
        merged = copy.deepcopy(HUB_FLAVORS)
        for name, spec in self._values["hardware"].items():
            merged[name] = {**merged.get(name, {"gpus": 0}), **spec}
        return merged

    @property
    def db_path(self) -> Path:
        return self.home / "state.db"


def _fail(message: str, hint: str | None = None):
    from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
    raise SpaceError(message, hint=hint)


def load(path: str | os.PathLike | None = None, home: str | os.PathLike | None = None) -> Settings:
    path = Path(path or os.environ.get("SPACEHOOKS_CONFIG", DEFAULT_CONFIG))
    home = Path(home or os.environ.get("SPACEHOOKS_HOME", DEFAULT_HOME))
    raw: dict = {}
    if path.exists():
        try:
            raw = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            _fail(f"{path}: not valid YAML: {exc}", hint="fix the file or remove it to use the defaults")
        if not isinstance(raw, dict):
            _fail(f"{path}: must be a mapping of settings")
    values = {s.key: copy.deepcopy(s.default) for s in SETTINGS}
    for key, value in _flatten(raw).items():
        setting = _BY_KEY.get(key)
        if setting is None:
            _fail(f"{path}: unknown setting {key!r}", hint="see `spacehooks config-doc` for every key")
        if not isinstance(value, setting.kind) or (setting.kind is int and isinstance(value, bool)):
            _fail(f"{path}: {key!r} must be {_kind_name(setting.kind)}, found {value!r}")
        values[key] = value
    return Settings(values, home, path if path.exists() else None)


def _kind_name(kind) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a mapping"}
    if isinstance(kind, tuple):
        return "a number"
    return names.get(kind, kind.__name__)


def markdown_table() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = yaml.safe_dump(s.default, default_flow_style=True).strip().removesuffix("...").strip()
        rows.append(f"| `{s.key}` | `{default}` | {s.help} |")
    return "\n".join(rows)
