"""Per-Space limits: overrides of the flavor's memory, CPUs and processes, stored in the
state's `limits` column; setting one restarts a running Space (Podman cannot reliably
update the limits of a running container, so it is recreated)."""
from __future__ import annotations

from spacehooks.run import gpu, runner
from spacehooks.queue import jobs as queue_mod
from spacehooks import stages
from spacehooks.admin.spaces import _open, restart_if_running
from spacehooks.errors import SpaceError
from spacehooks.results import HardwareSet, LimitRow, LimitsSet

KEYS = ("memory_mb", "cpus", "pids")


def set_hardware(settings, space_id: str, flavor_name: str, on_restart=None) -> HardwareSet:
    """Move the Space to a flavor; a started (or crashed) Space restarts on it. `on_restart`,
    if given, hears of the restart before it begins (it can take the app's startup time)."""
    stage = gpu.assign_flavor(settings, space_id, flavor_name)
    result = HardwareSet(space_id, flavor_name, stage,
                         restarted=stage in (*stages.STARTED, stages.RUNTIME_ERROR))  # a crashed app gets another try
    if result.restarted:
        if on_restart:
            on_restart(result)
        runner.restart(settings, space_id)
    return result


def set_limits(settings, space_id: str, values: dict, reset: bool = False) -> LimitsSet:
    values = {k: v for k, v in values.items() if v is not None}
    if not values and not reset:
        raise SpaceError("nothing to set", hint="give --memory-mb, --cpus or --pids (or --reset)")
    st = _open(settings)
    try:
        space = queue_mod.require_space(st, space_id)
        limits = {} if reset else dict(space.get("limits") or {})
        limits.update(values)
        st.update_space(space_id, limits=limits)
    finally:
        st.close()
    return LimitsSet(space_id, {k: limits[k] for k in KEYS if k in limits}, restart_if_running(settings, space_id))


def show(settings, space_id: str) -> list[LimitRow]:
    st = _open(settings)
    try:
        space = queue_mod.require_space(st, space_id)
    finally:
        st.close()
    effective = runner.limits_for(settings, space)
    flavor_name = space.get("hardware") or settings["run.default_hardware"]
    flavor = settings.flavors.get(flavor_name, {})
    overrides = space.get("limits") or {}
    return [LimitRow(key, effective[key], "set for this Space" if key in overrides
                     else f"hardware {flavor_name}" if key in flavor else f"run.{key}") for key in KEYS]
