"""Per-Space limits: overrides of the flavor's memory, CPUs and processes, stored in the
state's `limits` column; setting one restarts a running Space (Podman cannot reliably
update the limits of a running container, so it is recreated)."""
from __future__ import annotations

from spacehooks import gpu, runner
from spacehooks import queue as queue_mod
from spacehooks import state as state_mod
from spacehooks.admin import Echo, _open, _restart_if_running
from spacehooks.errors import SpaceError

KEYS = ("memory_mb", "cpus", "pids")


def set_hardware(settings, space_id: str, flavor_name: str, echo: Echo) -> None:
    stage = gpu.assign_flavor(settings, space_id, flavor_name)
    if stage in (*state_mod.STARTED, "RUNTIME_ERROR"):  # a crashed app gets another try on the new flavor
        echo(f"{space_id}: hardware {flavor_name}; restarting")
        runner.restart(settings, space_id)
    else:
        echo(f"{space_id}: hardware {flavor_name}; applies when it next starts (now {stage})")


def set_limits(settings, space_id: str, values: dict, reset: bool, echo: Echo) -> None:
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
    echo(f"{space_id}: limits " + (", ".join(f"{k}={limits[k]}" for k in KEYS if k in limits)
                                   or "from its hardware flavor"))
    _restart_if_running(settings, space_id, echo)


def show(settings, space_id: str, echo: Echo) -> None:
    st = _open(settings)
    try:
        space = queue_mod.require_space(st, space_id)
    finally:
        st.close()
    effective = runner.limits_for(settings, space)
    flavor_name = space.get("hardware") or settings["run.default_hardware"]
    flavor = settings.flavors.get(flavor_name, {})
    overrides = space.get("limits") or {}
    for key in KEYS:
        source = ("set for this Space" if key in overrides
                  else f"hardware {flavor_name}" if key in flavor else f"run.{key}")
        echo(f"{key:10} {effective[key]!s:8} ({source})")
