"""What each server setting's value must be beyond its type (ranges, addresses, flavors, the
Python versions), each answer as (what is wrong, how to fix it). config.py declares the
settings and loads them; it runs these checks on every value."""
from __future__ import annotations


def check_value(key: str, value, values: dict, extra: dict | None = None) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) for a value of the right type that still cannot work;
    `extra`: checks of config.py's own (those that need its declarations)."""
    check = (extra or {}).get(key) or CHECKS.get(key)
    return check(value, values) if check else None


def _at_least(low, fix: str):
    return lambda v, _: None if v >= low else (f"must be at least {low}, found {v!r}", fix)


def _listen(value: str, _) -> tuple[str, str] | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f"must be HOST:PORT with a port from 1 to 65535, found {value!r}", "write it like 127.0.0.1:8080"
    return None


def _metrics_listen(value: str, values: dict) -> tuple[str, str] | None:
    if not value:
        return None
    if value == values["gateway.listen"]:
        return "must not be the gateway's public address (gateway.listen)", "give it an address of its own, like 127.0.0.1:9464"
    return _listen(value, values)


def _port_range(value: list, _) -> tuple[str, str] | None:
    if (len(value) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) for p in value)
            or not 1024 <= value[0] <= value[1] <= 65535):
        return (f"must be [FIRST, LAST], two ports with 1024 <= FIRST <= LAST <= 65535, found {value!r}",
                "write it like [20000, 29999]")
    return None


def _python_versions(value: dict, _) -> tuple[str, str] | None:
    fix = 'map each version to its base image, like {"3.11": "localhost/spacehooks/python:3.11"}'
    if not value:
        return "must name at least one Python version", fix
    for version, image in value.items():
        parts = str(version).split(".")
        if not isinstance(version, str) or len(parts) != 2 or not all(p.isdigit() for p in parts):
            return f"has {version!r}: versions are written MAJOR.MINOR as a quoted string", fix
        if not isinstance(image, str) or not image.strip():
            return f"{version}: the base image must be a non-empty string, found {image!r}", fix
    return None


FLAVOR_FIELDS = {"cpus": (int, float), "memory_mb": int, "disk_mb": int, "tmp_mb": int, "gpus": int,
                 "gpu_kind": str, "shared": bool, "accelerator": str}
_FLAVOR_FIX = "write each flavor as a mapping, like `cpu-basic: {cpus: 2, memory_mb: 16384}`"


def _hardware(value: dict, _) -> tuple[str, str] | None:
    for name, spec in value.items():
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
            return f"has a flavor named {name!r}: use letters, digits, - _ .", _FLAVOR_FIX
        if not isinstance(spec, dict):
            return f"{name}: must be a mapping of {', '.join(FLAVOR_FIELDS)}, found {spec!r}", _FLAVOR_FIX
        for field, field_value in spec.items():
            kind = FLAVOR_FIELDS.get(field)
            if kind is None:
                return f"{name}: unknown field {field!r}; known: {', '.join(FLAVOR_FIELDS)}", _FLAVOR_FIX
            if not isinstance(field_value, kind) or (kind is not bool and isinstance(field_value, bool)):
                return f"{name}.{field} must be {kind_name(kind)}, found {field_value!r}", _FLAVOR_FIX
            if field in ("cpus", "memory_mb") and field_value <= 0 or field == "gpus" and field_value < 0:
                return f"{name}.{field} must be positive, found {field_value!r}", _FLAVOR_FIX
        if spec.get("gpus") and "/" not in spec.get("gpu_kind", "nvidia.com/gpu"):
            return (f"{name}.gpu_kind must be a CDI kind such as nvidia.com/gpu, found {spec['gpu_kind']!r}",
                    _FLAVOR_FIX)
    return None


def _tiers(value: dict, _) -> tuple[str, str] | None:
    fix = "map each tier to its size in MB, like {small: 20480}"
    for name, size in value.items():
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_" for c in name):
            return f"has a tier named {name!r}: use letters, digits, - _", fix
        if not isinstance(size, int) or isinstance(size, bool) or size < 16:
            return f"{name}: the size must be a whole number of MB, at least 16, found {size!r}", fix
    return None


def _overcommit(value: dict, _) -> tuple[str, str] | None:
    fix = "write it like {memory: 1.0, cpus: 4.0, storage: 1.0}"
    for key, ratio in value.items():
        if key not in ("memory", "cpus", "storage"):
            return f"has unknown key {key!r}; known: memory, cpus, storage", fix
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or ratio <= 0:
            return f"{key} must be a number above 0, found {ratio!r}", fix
    return None


def _default_python(value: str, values: dict) -> tuple[str, str] | None:
    # with the nearest-version fallback a missing default is served like a README's version
    if value not in values["python_versions"] and values.get("python_version_fallback") == "refuse":
        return (f"is {value!r}, which python_versions does not provide ({', '.join(values['python_versions'])})",
                "add it to python_versions or pick one of those")
    return None


def _strings(value: list, _) -> tuple[str, str] | None:
    bad = [v for v in value if not isinstance(v, str) or not v]
    return (f"must be a list of non-empty strings, found {bad[0]!r}", "quote each entry") if bad else None

def _lfs_path(value: str, _) -> tuple[str, str] | None:
    if not value.replace("{repo}", "/x", 1).startswith("/") or "{" in value.replace("{repo}", ""):
        return (f"must be an absolute path, which may start with {{repo}} (the bare repository), found {value!r}",
                "write it like {repo}/lfs/objects or /var/lib/gitea/data/lfs")
    return None


def _image_aliases(value: dict) -> tuple[str, str] | None:
    for pattern, image in value.items():
        if not (isinstance(pattern, str) and isinstance(image, str) and pattern and image
                and not any(c.isspace() for c in pattern + image)):
            return (f"maps {pattern!r} to {image!r}: both must be image names without spaces",
                    'write it like "python:3.*": localhost/spacehooks/python-compat:3.11')
    return None


CHECKS = {
    "python_versions": _python_versions,
    "default_python_version": _default_python,
    "podman_url": lambda v, _: None if v.startswith("unix://") and len(v) > 7 else (
        f"must be a unix:// socket URL, found {v!r}", "write it like unix:///run/spacehooks/podman.sock"),
    "engine": lambda v, _: None if v in ("podman", "kubernetes") else (
        f"must be podman or kubernetes, found {v!r}", "set engine: podman"),
    "build.concurrency": _at_least(1, "set 1 or more"),
    "build.push_log_seconds": _at_least(0, "set 0 or more"),
    "build.timeout_seconds": _at_least(1, "set the seconds a build may take"),
    "run.memory_mb": _at_least(16, "set the memory in MB, like 16384"),
    "run.cpus": lambda v, _: None if v > 0 else (f"must be more than 0, found {v!r}", "set the CPUs, like 2 or 0.5"),
    "run.pids": _at_least(16, "set 16 or more"),
    "run.nofile": _at_least(64, "set 64 or more (and at most the host's `ulimit -Hn`)"),
    "run.port_range": _port_range,
    "run.sleep_seconds": lambda v, _: None if v == -1 or v > 0 else (
        f"must be -1 (never) or a number of seconds, found {v!r}", "set -1 or a positive number"),
    "run.grace_seconds": _at_least(0, "set 0 or more"),
    "run.keep_builds": _at_least(1, "keep at least the image that serves: 1 or more"),
    "run.gc_interval_seconds": _at_least(0, "set 0 (only by hand) or a number of seconds"),
    "hardware": _hardware,
    "storage.tiers": _tiers,
    "storage.uid_base": _at_least(65536, "set a host uid above every account's, like 1073741824"),
    "capacity.overcommit": _overcommit,
    "capacity.memory_mb": _at_least(0, "set 0 (the machine's memory) or a size in MB"),
    "capacity.cpus": _at_least(0, "set 0 (the machine's cores) or a number of cores"),
    "kubernetes.service_type": lambda v, _: None if v in ("ClusterIP", "NodePort") else (
        f"must be ClusterIP or NodePort, found {v!r}", "set kubernetes.service_type: ClusterIP"),
    "kubernetes.gateway_cidrs": _strings,
    "api.upload_max_bytes": _at_least(1, "set a size in bytes"),
    "api.upload_max_files": _at_least(1, "set 1 or more"),
    "git_http.lfs_max_bytes": _at_least(0, "set a size in bytes"),
    "gateway.stream_idle_seconds": _at_least(0, "set 0 (never) or a number of seconds, like 300"),
    "secret_scan.allow_paths": _strings,
    "api.hardware_flavors": _strings,
    "build.image_aliases": lambda v, _: _image_aliases(v),
    "lfs.layout": lambda v, _: None if v in ("auto", "plain", "gitea", "gitlab") else (
        f"must be auto, plain, gitea or gitlab, found {v!r}", "set the git server's layout, or auto"),
    "lfs.plain_path": _lfs_path,
    "lfs.gitea_path": _lfs_path,
    "lfs.gitlab_path": _lfs_path,
    "gpu.cdi_dirs": _strings,
    "gateway.listen": _listen,
    "metrics.listen": _metrics_listen,
    "gateway.sleep_check_seconds": lambda v, _: None if v > 0 else (
        f"must be more than 0, found {v!r}", "set a number of seconds, like 30"),
    "logs.max_bytes": _at_least(0, "set 0 (never rotate) or a size in bytes"),
    "logs.keep": _at_least(0, "set 0 or more"),
}


def kind_name(kind) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a mapping"}
    if isinstance(kind, tuple):
        return "a number"
    return names.get(kind, kind.__name__)
