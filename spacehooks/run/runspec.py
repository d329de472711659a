"""What a Space's container is created with, as a RunSpec (plain data, engine/spec.py): name,
labels, limits, environment, secrets, ports.

Every Space container runs as uid 1000 with no capabilities, no-new-privileges, an init
process, explicit ulimits and its port on 127.0.0.1 only; on its Space's own network
(netfence), in a user namespace of its own (uid 1000 inside is a host id no account has).
Those are RunSpec's defaults; the engine says how it honours them.
"""
from __future__ import annotations

import time

from spacehooks import trust
from spacehooks.engine import netfence
from spacehooks.push import spaceconfig
from spacehooks.run import storage
from spacehooks import state as state_mod
from spacehooks.engine import FileMount, RunSpec

LABEL = "spacehooks.space"
STREAMLIT_SECRETS = "/home/user/app/.streamlit/secrets.toml"


def container_name(space_id: str, build_id) -> str:
    return f"spacehooks-{space_id.replace('/', '-')}-{build_id}-{int(time.time() * 1000) % 100000000}"


def space_host(settings, space_id: str) -> str:
    from spacehooks.push import addresses
    return addresses.host(settings, space_id)


def limits_for(settings, space: dict) -> dict:
    flavor = settings.flavors.get(space.get("hardware") or settings["run.default_hardware"], {})
    limits = {"memory_mb": settings["run.memory_mb"], "cpus": settings["run.cpus"], "pids": settings["run.pids"],
              "disk_mb": settings["run.disk_mb"], "tmp_mb": settings["run.tmp_mb"]}
    limits.update({k: flavor[k] for k in ("memory_mb", "cpus", "disk_mb", "tmp_mb") if k in flavor})
    limits.update(space.get("limits") or {})
    limits["gpus"] = flavor.get("gpus", 0)
    return limits


def environment(settings, space: dict, config: dict, limits: dict, secrets: dict, variables: dict) -> dict:
    owner, _, name = space["id"].partition("/")
    # the CA's variables first: a Space's own variables and secrets may set them otherwise
    env = {**trust.run_env(settings), **variables, **secrets}
    env.update({
        "SPACE_ID": space["id"], "SPACE_AUTHOR_NAME": owner, "SPACE_REPO_NAME": name,
        "SPACE_TITLE": str(config.get("title") or name), "SPACE_HOST": space_host(settings, space["id"]),
        "CPU_CORES": str(limits["cpus"]), "MEMORY": f"{int(limits['memory_mb']) // 1024}Gi"
        if int(limits["memory_mb"]) >= 1024 else f"{int(limits['memory_mb'])}Mi",
        "ACCELERATOR": _accelerator(settings, space), "SYSTEM": "spaces",
        "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": str(spaceconfig.GRADIO_PORT), "HOME": "/home/user",
    })
    return env


def _accelerator(settings, space: dict) -> str:
    from spacehooks.run import gpu
    return gpu.accelerator_name(settings, space.get("hardware") or settings["run.default_hardware"])


def streamlit_secrets(secrets: dict) -> bytes:
    """Streamlit reads secrets from .streamlit/secrets.toml: mounted read-only, owned by the app's user."""
    return "".join(f'{k} = "{_toml_escape(v)}"\n' for k, v in sorted(secrets.items())).encode()


def _toml_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(st: state_mod.State, space: dict, build_id) -> dict:
    """What `spacehooks state rebuild` reads back when the state store is lost."""
    build = st.get_build(build_id) if isinstance(build_id, int) else None
    commit = (build or {}).get("commit") or space.get("commit") or ""
    return {LABEL: space["id"], "spacehooks.build": str(build_id), "spacehooks.commit": commit,
            "spacehooks.repo": str(space.get("repo_path") or "")}


def spec(settings, st: state_mod.State, space: dict, image: str, config: dict, build_id, port: int,
         gpu_devices: list[str] | tuple[str, ...] = ()) -> RunSpec:
    """The container of space's build_id on host port `port`. GPUs are allocated by the caller
    (gpu.devices_for), which passes their CDI names in.

    Byte caps on every place a Space writes: the root is read-only, home (copied from the
    image at each start) and /tmp have a fixed size, and the engine cuts the container's own
    log at run.log_bytes."""
    limits = limits_for(settings, space)
    secrets = state_mod.read_secrets(settings.home, space["id"])
    env = environment(settings, space, config, limits, secrets, st.variables(space["id"]))
    # /data shared by blue and green: one fixed id range for all the Space's containers
    data = storage.run_fields(settings, space["id"]) or {}
    env.update(data.pop("env", {}))
    # kept apart so an engine can store them as secrets; disjoint from env, same values as merged
    secret_env = {k: env.pop(k) for k in list(env) if k in secrets and env[k] == secrets[k]}
    files = [FileMount(target=m["target"], source=m["source"]) for m in trust.run_mounts(settings)]
    if config.get("sdk") == "streamlit":
        files.append(FileMount(target=STREAMLIT_SECRETS, content=streamlit_secrets(secrets), owned_by_user=True))
    flavor = settings.flavors.get(space.get("hardware") or settings["run.default_hardware"], {})
    return RunSpec(
        name=container_name(space["id"], build_id), image=image, space_id=space["id"],
        labels=labels(st, space, build_id), env=env, secrets=secret_env,
        app_port=spaceconfig.app_port(config), host_port=port, network=netfence.network_name(settings, space["id"]),
        memory_mb=int(limits["memory_mb"]), cpus=float(limits["cpus"]), pids=int(limits["pids"]),
        nofile=int(settings["run.nofile"]), disk_mb=int(limits["disk_mb"]), tmp_mb=int(limits["tmp_mb"]),
        log_bytes=int(settings["run.log_bytes"]), files=tuple(files), gpu_devices=tuple(gpu_devices),
        gpus=int(limits.get("gpus") or 0), gpu_kind=flavor.get("gpu_kind"), **data,
    )
