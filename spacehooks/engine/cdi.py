"""CDI specs: read them, check them against what the local Podman loads, write NVIDIA ones.

Podman turns every problem with a spec into "unresolvable CDI devices" (the cause only shows
at --log-level=debug), so the checks here name the cause and the fix instead.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SPEC_SUFFIXES = (".json", ".yaml", ".yml")

# Newest cdiVersion each Podman release's vendored CDI library loads (it checks the version
# against a fixed list). 4.3 was verified on this project's machines; the rest follow the
# library versions those releases vendor.
PODMAN_MAX_CDI = [((0, 0), "0.3.0"), ((4, 3), "0.5.0"), ((4, 6), "0.6.0"), ((5, 0), "0.7.0"),
                  ((5, 2), "0.8.0"), ((5, 5), "1.0.0")]

# Fields by the cdiVersion that introduced them. The library decodes strictly: one field it
# does not know makes the whole spec unloadable.
_FIELDS = {
    "spec": {"0.1.0": {"cdiVersion", "kind", "devices", "containerEdits"}, "0.6.0": {"annotations"}},
    "device": {"0.1.0": {"name", "containerEdits"}, "0.6.0": {"annotations"}},
    "edits": {"0.1.0": {"env", "deviceNodes", "hooks", "mounts"},
              "0.7.0": {"intelRdt", "additionalGids"}, "1.0.0": {"netDevices"}},
    "deviceNode": {"0.1.0": {"path", "hostPath", "type", "major", "minor", "fileMode",
                             "permissions", "uid", "gid"}},
    "mount": {"0.1.0": {"hostPath", "containerPath", "options", "type"}},
    "hook": {"0.1.0": {"hookName", "path", "args", "env", "timeout"}},
}

_VENDOR = re.compile(r"^[A-Za-z]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
# Podman 4.3 panics on a one-letter class name, so two characters at least.
_CLASS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*[A-Za-z0-9]$")
_DEVICE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$")


def version_tuple(text: str) -> tuple | None:
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?", str(text).strip())
    return tuple(int(p or 0) for p in match.groups()) if match else None


def max_cdi_version(podman_version: str) -> str:
    """Newest cdiVersion the given Podman version loads."""
    have = version_tuple(podman_version.split("-")[0]) or (0, 0, 0)
    best = PODMAN_MAX_CDI[0][1]
    for since, cdi_version in PODMAN_MAX_CDI:
        if have[:2] >= since:
            best = cdi_version
    return best


@dataclass
class Problem:
    message: str
    fix: str


@dataclass
class Spec:
    path: Path
    kind: str = ""
    version: str = ""
    devices: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    @property
    def loadable(self) -> bool:
        return not self.problems


def check(data, podman_version: str) -> list[Problem]:
    """What keeps Podman `podman_version` from loading the spec `data` (empty: it loads)."""
    if not isinstance(data, dict):
        return [Problem("not a CDI spec (expected a mapping with cdiVersion, kind and devices)",
                        "fix or remove the file")]
    limit = max_cdi_version(podman_version)
    problems = []
    version = data.get("cdiVersion")
    have = version_tuple(version) if isinstance(version, str) else None
    if have is None:
        problems.append(Problem(f"cdiVersion {version!r} is not a version such as \"{limit}\"",
                                f"set cdiVersion to \"{limit}\""))
    elif have > version_tuple(limit):
        problems.append(Problem(
            f"cdiVersion {version} is newer than Podman {podman_version} loads (at most {limit}); "
            f"Podman would only say \"unresolvable CDI devices\"",
            f"write the spec with cdiVersion {limit} (for NVIDIA GPUs: `spacehooks gpu cdi-generate`), "
            f"or install a newer Podman"))
    kind = data.get("kind")
    if not isinstance(kind, str) or kind.count("/") != 1 or not _VENDOR.match(kind.split("/")[0]) \
            or not _CLASS.match(kind.split("/")[1]):
        problems.append(Problem(
            f"kind {kind!r} is not `vendor.example/class` (class: letters, digits, - and _, "
            f"at least 2 characters)", "rename the kind, e.g. `example.com/gpu`"))
    problems += _unknown_fields(data, limit, podman_version)
    devices = data.get("devices")
    if not isinstance(devices, list) or not devices:
        problems.append(Problem("no devices listed", "add at least one entry under `devices`"))
        return problems
    for device in devices:
        name = str(device.get("name", "")) if isinstance(device, dict) else ""
        if not _DEVICE.match(name):
            problems.append(Problem(f"device name {name!r} is not valid (letters, digits, _ . : -)",
                                    "rename the device"))
    return problems


def _unknown_fields(data: dict, limit: str, podman_version: str) -> list[Problem]:
    found = []

    def visit(obj, where: str, path: str):
        if not isinstance(obj, dict):
            return
        for key in obj:
            since = next((v for v, names in _FIELDS[where].items() if key in names), None)
            if since is None or version_tuple(since) > version_tuple(limit):
                needs = f" (it needs cdiVersion {since})" if since else ""
                found.append(Problem(
                    f"field `{path}{key}` is not known to Podman {podman_version}'s CDI loader, "
                    f"which then rejects the whole spec{needs}", f"remove `{path}{key}` from the spec"))
        edits = {"containerEdits": "edits"}
        for key, sub in edits.items():
            visit(obj.get(key), sub, f"{path}{key}.")
        if where == "edits":
            for key, sub in (("deviceNodes", "deviceNode"), ("mounts", "mount"), ("hooks", "hook")):
                for i, item in enumerate(obj.get(key) or []):
                    visit(item, sub, f"{path}{key}[{i}].")

    visit(data, "spec", "")
    for i, device in enumerate(data.get("devices") or []):
        visit(device, "device", f"devices[{i}].")
    return found


def read(path: Path, podman_version: str) -> Spec:
    spec = Spec(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        spec.problems.append(Problem(f"cannot be read: {first}", "fix or remove the file"))
        return spec
    spec.problems = check(data, podman_version)
    if isinstance(data, dict):
        spec.kind = str(data.get("kind", ""))
        spec.version = str(data.get("cdiVersion", ""))
        spec.devices = [str(d.get("name")) for d in data.get("devices") or [] if isinstance(d, dict)]
    return spec


def read_dirs(dirs, podman_version: str) -> list[Spec]:
    """Every spec file in `dirs`, in Podman's order (later directories override earlier ones)."""
    specs = []
    for folder in dirs:
        folder = Path(folder)
        if folder.is_dir():
            specs += [read(p, podman_version) for p in sorted(folder.iterdir())
                      if p.suffix in SPEC_SUFFIXES and p.is_file()]
    _mark_conflicts(specs)
    return specs


def _mark_conflicts(specs: list[Spec]) -> None:
    # Podman refuses a device that two loadable specs of one directory both define.
    seen: dict = {}
    for spec in specs:
        if not spec.loadable:
            continue
        for name in spec.devices:
            key = (spec.path.parent, spec.kind, name)
            other = seen.setdefault(key, spec)
            if other is not spec:
                for s, o in ((spec, other), (other, spec)):
                    s.problems.append(Problem(
                        f"device {spec.kind}={name} is also defined in {o.path}; Podman then refuses both",
                        f"remove one of {o.path.name} and {s.path.name}"))


def inventory(specs: list[Spec]) -> dict[str, list[str]]:
    """Kind -> device names Podman can hand out. `all` is a convenience alias, not a device."""
    found: dict = {}
    for spec in specs:
        if spec.loadable:
            names = found.setdefault(spec.kind, [])
            names += [n for n in spec.devices if n != "all" and n not in names]
    return {kind: sorted(names, key=natural_key) for kind, names in found.items()}


def natural_key(name: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# --- NVIDIA spec generation ---------------------------------------------------------------

NVIDIA_KIND = "nvidia.com/gpu"
GENERATED_VERSION = "0.5.0"
_CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
_LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu", "usr/lib64", "usr/lib",
             "lib/x86_64-linux-gnu", "lib64", "usr/local/nvidia/lib64", "usr/local/nvidia/lib")
_LIB_PATTERNS = ("libcuda.so*", "libcudadebugger.so*", "libnvidia-*.so*", "libnvcuvid.so*",
                 "libnvoptix.so*")
_BIN_DIRS = ("usr/bin", "usr/local/nvidia/bin", "bin")
_BINARIES = ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control",
             "nvidia-cuda-mps-server")


@dataclass
class NvidiaHost:
    gpus: list = field(default_factory=list)       # (index, host path)
    control: list = field(default_factory=list)    # host paths of the shared nodes
    files: list = field(default_factory=list)      # (container path, host path), libraries then binaries


def find_nvidia(dev_root: Path, driver_root: Path) -> NvidiaHost:
    """Device nodes under dev_root/dev; driver files under driver_root, seen as if it were `/`."""
    host = NvidiaHost()
    dev = Path(dev_root) / "dev"
    for node in sorted(dev.glob("nvidia*"), key=lambda p: natural_key(p.name)):
        match = re.fullmatch(r"nvidia(\d+)", node.name)
        if match:
            host.gpus.append((int(match.group(1)), node))
    host.control = [dev / name for name in _CONTROL_NODES if (dev / name).exists()]
    root = Path(driver_root)
    seen_dirs, seen = set(), set()
    for rel_dirs, patterns in ((_LIB_DIRS, _LIB_PATTERNS), (_BIN_DIRS, _BINARIES)):
        for rel in rel_dirs:
            folder = root / rel
            # /lib is often a link to /usr/lib: the same files must not be mounted twice
            if not folder.is_dir() or folder.resolve() in seen_dirs:
                continue
            seen_dirs.add(folder.resolve())
            for pattern in patterns:
                for entry in sorted(folder.glob(pattern)):
                    target = entry.resolve()
                    container = "/" + str(entry.relative_to(root))
                    if target.is_file() and container not in seen:
                        seen.add(container)
                        host.files.append((container, str(target)))
    return host


def nvidia_spec(host: NvidiaHost, cdi_version: str = GENERATED_VERSION) -> dict:
    """A spec Podman loads without nvidia-ctk: soname links are mounted as files, no hooks."""
    read_only = ["ro", "nosuid", "nodev", "bind"]
    lib_dirs = []
    for container, _ in host.files:
        folder = str(Path(container).parent)
        if ".so" in Path(container).name and folder not in lib_dirs:
            lib_dirs.append(folder)
    env = ["NVIDIA_VISIBLE_DEVICES=void"]
    if lib_dirs:
        env.append("LD_LIBRARY_PATH=" + ":".join(lib_dirs))

    def node(path: Path) -> dict:
        return {"path": f"/dev/{path.name}", "hostPath": str(path)}

    devices = [{"name": str(index), "containerEdits": {"deviceNodes": [node(path)]}}
               for index, path in host.gpus]
    if host.gpus:
        devices.append({"name": "all", "containerEdits": {
            "deviceNodes": [node(path) for _, path in host.gpus]}})
    return {
        "cdiVersion": cdi_version,
        "kind": NVIDIA_KIND,
        "devices": devices,
        "containerEdits": {
            "env": env,
            "deviceNodes": [node(path) for path in host.control],
            "mounts": [{"hostPath": h, "containerPath": c, "options": read_only} for c, h in host.files],
        },
    }
