"""Hardware flavors and GPUs: what this host can give (CDI specs), and which Space holds which GPU.

Allocations live in the state store (table gpu_allocations, state/gpus.py), so they survive
restarts of spacehooks and are shared by every process that starts Spaces.
"""
from __future__ import annotations

from pathlib import Path

from spacehooks import cdi, engine
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError
from spacehooks.results import CdiDevice, CdiGenerated, CdiSpecRow, FlavorRow, GpuListing

def flavor(settings, name: str) -> dict:
    """The flavor `name` with every field filled in; a SpaceError for unknown or broken ones."""
    flavors = settings.flavors
    if name not in flavors:
        raise SpaceError(f"unknown hardware flavor {name!r}; known: {', '.join(sorted(flavors))}",
                         hint="pick one of those, or define it under `hardware:` in the server configuration")
    spec = {"cpus": settings["run.cpus"], "memory_mb": settings["run.memory_mb"], "gpus": 0,
            "gpu_kind": cdi.NVIDIA_KIND, "shared": False, **flavors[name]}
    where = f"hardware flavor {name!r} in the server configuration"
    if not isinstance(spec["gpus"], int) or isinstance(spec["gpus"], bool) or spec["gpus"] < 0:
        raise SpaceError(f"{where}: gpus must be a whole number, found {spec['gpus']!r}")
    if not isinstance(spec["shared"], bool):
        raise SpaceError(f"{where}: shared must be true or false, found {spec['shared']!r}")
    if spec["gpus"] and (not isinstance(spec["gpu_kind"], str) or "/" not in spec["gpu_kind"]):
        raise SpaceError(f"{where}: gpu_kind must be a CDI kind such as nvidia.com/gpu, "
                         f"found {spec['gpu_kind']!r}")
    return spec


def accelerator_name(settings, flavor_name: str) -> str:
    """Value of the Space's ACCELERATOR variable: the flavor's `accelerator`, else cuda or none."""
    spec = flavor(settings, flavor_name)
    if "accelerator" in spec:
        return str(spec["accelerator"])
    return "cuda" if spec["gpus"] else "none"


def podman_version(settings) -> str:
    return engine.get(settings).info().version


def specs(settings, version: str | None = None) -> list[cdi.Spec]:
    return cdi.read_dirs(settings["gpu.cdi_dirs"], version or podman_version(settings))


def host_devices(settings) -> dict[str, list[str]]:
    """CDI kind -> device names Podman can use on this host."""
    return cdi.inventory(specs(settings))


def allocations(settings) -> list[dict]:
    st = state_mod.open(settings)
    try:
        return st.gpu_allocations()
    finally:
        st.close()


def _choose(rows: list, space_id: str, name: str, spec: dict, available: list[str]) -> list[str]:
    """Devices for `space_id` given the other Spaces' holdings, or a SpaceError saying why not."""
    kind, wanted = spec["gpu_kind"], spec["gpus"]
    holders: dict = {}
    for row in rows:
        if row["kind"] == kind and row["space_id"] != space_id:
            holders.setdefault(row["device"], []).append(bool(row["shared"]))
    if spec["shared"]:
        usable = [d for d in available if all(holders.get(d, []))]
        usable.sort(key=lambda d: len(holders.get(d, [])))
    else:
        usable = [d for d in available if not holders.get(d)]
    if len(usable) >= wanted:
        return usable[:wanted]
    plural = "GPU" if wanted == 1 else "GPUs"
    if not available:
        raise SpaceError(f"hardware {name} needs {wanted} {plural} of kind {kind}, and this host has none",
                         hint="install the vendor's CDI spec in /etc/cdi (NVIDIA: `spacehooks gpu cdi-generate`); "
                              "`spacehooks gpu list` shows what Podman can use")
    if len(available) < wanted:
        raise SpaceError(f"hardware {name} needs {wanted} {plural} of kind {kind}; this host has {len(available)}",
                         hint="choose a flavor with fewer GPUs (`spacehooks hardware list`)")
    users = sorted({r["space_id"] for r in rows if r["kind"] == kind and r["space_id"] != space_id})
    raise SpaceError(f"no free GPU of kind {kind} for {space_id}: hardware {name} needs {wanted}, "
                     f"{len(usable)} of {len(available)} free (in use by {', '.join(users)})",
                     hint="stop one of those Spaces or move it to a CPU flavor (`spacehooks hardware set`), "
                          "then try again")


def devices_for(settings, space_id: str, flavor_name: str) -> list[str]:
    """Allocate (or confirm) the GPUs of `space_id` for `flavor_name`; CDI names for Podman."""
    spec = flavor(settings, flavor_name)
    if not spec["gpus"]:
        release(settings, space_id)
        return []
    available = host_devices(settings).get(spec["gpu_kind"], [])
    kind = spec["gpu_kind"]
    st = state_mod.open(settings)
    try:
        chosen = st.allocate_gpus(space_id, kind, spec["shared"],
                                  lambda rows: _keep_or_choose(rows, space_id, flavor_name, spec, available))
    finally:
        st.close()
    return [f"{kind}={d}" for d in sorted(chosen, key=cdi.natural_key)]


def _keep_or_choose(rows: list, space_id: str, name: str, spec: dict, available: list[str]) -> list[str] | None:
    """None when the Space keeps what it holds, else the devices it gets instead."""
    mine = [r for r in rows if r["space_id"] == space_id]
    held = [r["device"] for r in mine if r["kind"] == spec["gpu_kind"] and bool(r["shared"]) == spec["shared"]]
    # a running container keeps its GPUs while its replacement starts beside it
    if len(held) == len(mine) == spec["gpus"] and set(held) <= set(available):
        return None
    return _choose(rows, space_id, name, spec, available)


def release(settings, space_id: str) -> None:
    """Free every GPU `space_id` holds (it stopped, slept or changed flavor)."""
    st = state_mod.open(settings)
    try:
        st.release_gpus(space_id)
    finally:
        st.close()


def availability(settings, name: str, spec: dict, inventory: dict, rows: list) -> str:
    if not spec["gpus"]:
        return "available"
    kind = spec["gpu_kind"]
    available = inventory.get(kind, [])
    if not available:
        return f"no GPU of kind {kind} on this host"
    if len(available) < spec["gpus"]:
        return f"needs {spec['gpus']} GPUs of kind {kind}, this host has {len(available)}"
    try:
        _choose(rows, "", name, spec, available)
    except SpaceError:
        busy = True
    else:
        busy = False
    if spec["shared"]:
        return "busy (all GPUs held exclusively)" if busy else f"available (shared, {len(available)} GPUs)"
    free = sum(1 for d in available if not any(r["kind"] == kind and r["device"] == d for r in rows))
    return f"{'busy: ' if busy else ''}{free} of {len(available)} free"


def hardware_list(settings) -> list[FlavorRow]:
    """Every flavor, fewest GPUs first, with what this host can give of it now."""
    inventory = host_devices(settings)
    rows = allocations(settings)
    specs_by_name = {name: flavor(settings, name) for name in settings.flavors}
    return [FlavorRow(name, spec["cpus"], spec["memory_mb"], spec["gpus"], spec["gpu_kind"], bool(spec["shared"]),
                      availability(settings, name, spec, inventory, rows))
            for name, spec in sorted(specs_by_name.items(), key=lambda item: (item[1]["gpus"], item[0]))]


def gpu_list(settings) -> GpuListing:
    version = podman_version(settings)
    holders: dict = {}
    for row in allocations(settings):
        holders.setdefault((row["kind"], row["device"]), []).append(row["space_id"])
    return GpuListing(version, list(settings["gpu.cdi_dirs"]), [
        CdiSpecRow(str(spec.path), spec.kind, spec.version, spec.loadable,
                   [(p.message, p.fix) for p in spec.problems],
                   [CdiDevice(name, holders.get((spec.kind, name), [])) for name in spec.devices])
        for spec in specs(settings, version)])


def cdi_generate(settings, dev_root: Path, driver_root: Path, output: str | None,
                 cdi_version: str | None) -> CdiGenerated:
    """Write a CDI spec for the host's NVIDIA GPUs (output "-": only return it)."""
    host = cdi.find_nvidia(dev_root, driver_root)
    if not host.gpus:
        raise SpaceError(f"no NVIDIA GPU found: no {Path(dev_root) / 'dev'}/nvidia[0-9]* device node",
                         hint="load the NVIDIA driver (`nvidia-smi` should list the GPUs), or pass --dev-root")
    if not any("/libcuda.so" in c for c, _ in host.files):
        raise SpaceError(f"no NVIDIA driver library (libcuda.so*) under {driver_root}",
                         hint="install the driver's user-space libraries, or pass --driver-root")
    local = podman_version(settings) if cdi_version is None or output != "-" else None
    if cdi_version is None:
        limit = cdi.max_cdi_version(local)
        cdi_version = min((cdi.GENERATED_VERSION, limit), key=cdi.version_tuple)
    data = cdi.nvidia_spec(host, cdi_version)
    result = CdiGenerated(None, cdi_version, [f"{cdi.NVIDIA_KIND}={d['name']}" for d in data["devices"]],
                          [str(p) for p in host.control], len(host.files), data)
    if output == "-":
        return result
    target = Path(output or Path(settings["gpu.cdi_dirs"][0]) / "spacehooks-nvidia.json")
    for spec in cdi.read_dirs(settings["gpu.cdi_dirs"], local):
        if spec.kind != cdi.NVIDIA_KIND or spec.path.resolve() == target.resolve():
            continue
        if spec.loadable:
            raise SpaceError(f"{spec.path} already defines {cdi.NVIDIA_KIND} and Podman {local} loads it",
                             hint="keep it (no need to generate), or remove it and run this again")
        result.ignored.append(f"ignoring {spec.path}: Podman {local} does not load it ({spec.problems[0].message})")
    cdi.write(target, data)
    result.path = str(target)
    return result


def assign_flavor(settings, space_id: str, flavor_name: str) -> str:
    """Record the Space's flavor once its GPUs are known to be free; returns its stage.
    Restarting the Space is the caller's business (limits.set_hardware)."""
    spec = flavor(settings, flavor_name)
    st = state_mod.open(settings)
    try:
        space = st.get_space(space_id)
        if space is None:
            raise SpaceError(f"no Space {space_id!r}", hint="give it as owner/name, as its repository path")
        if spec["gpus"]:
            rows = st.gpu_holdings()
            _choose(rows, space_id, flavor_name, spec, host_devices(settings).get(spec["gpu_kind"], []))
        st.update_space(space_id, hardware=flavor_name)
        stage = space["stage"]
    finally:
        st.close()
    release(settings, space_id)
    return stage
