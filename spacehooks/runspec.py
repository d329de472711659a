"""What a Space's container is created with: name, labels, limits, environment, secrets, ports.

Every Space container runs as uid 1000 with no capabilities, no-new-privileges, an init
process, explicit ulimits and its port on 127.0.0.1 only; on its Space's own network
(netfence), in a user namespace of its own (uid 1000 inside is a host id no account has).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from spacehooks import netfence, spaceconfig, storage, trust
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError

LABEL = "spacehooks.space"
# Podman picks a free host range from /etc/subuid's `containers` entry for each container
# (the REST API needs the mapping request spelled out; the CLI's --userns=auto does this).
USERNS = {"userns_mode": "auto", "idmappings": {"AutoUserNs": True, "AutoUserNsOpts": {"Size": 65536}}}
# With a user namespace, Podman 4.3's own /dev/shm mount (userdata/shm on the host) races its
# clean-up when a container is removed ("device or resource busy", the container's storage
# left behind, its image then impossible to remove); a private IPC namespace with /dev/shm
# as the container's own tmpfs has no host mount to race.
SHM_MOUNT = {"type": "tmpfs", "target": "/dev/shm", "size": "65536k"}


def container_name(space_id: str, build_id) -> str:
    return f"spacehooks-{space_id.replace('/', '-')}-{build_id}-{int(time.time() * 1000) % 100000000}"


def space_host(settings, space_id: str) -> str:
    from spacehooks import addresses
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
    from spacehooks import gpu
    return gpu.accelerator_name(settings, space.get("hardware") or settings["run.default_hardware"])


def _gpu_devices(settings, space: dict, limits: dict) -> list[str]:
    if not limits.get("gpus"):
        return []
    try:
        from spacehooks import gpu
    except ImportError as exc:
        raise SpaceError(f"hardware {space.get('hardware')} needs GPUs, but GPU support is not installed") from exc
    return gpu.devices_for(settings, space["id"], space.get("hardware") or settings["run.default_hardware"])


def _streamlit_secrets(settings, space_id: str, secrets: dict) -> Path:
    """Streamlit reads secrets from .streamlit/secrets.toml: written here, mounted read-only."""
    folder = Path(settings.home) / "run" / space_id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / "secrets.toml"
    body = "".join(f'{k} = "{_toml_escape(v)}"\n' for k, v in sorted(secrets.items()))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    with os.fdopen(fd, "w") as fh:
        fh.write(body)
    if os.geteuid() != 0:
        path.chmod(0o444)
    # as root it stays 0400: the mount's chown option hands it to the host id uid 1000 maps to
    return path


def _toml_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(st: state_mod.State, space: dict, build_id) -> dict:
    """What `spacehooks state rebuild` reads back when the state store is lost."""
    build = st.get_build(build_id) if isinstance(build_id, int) else None
    commit = (build or {}).get("commit") or space.get("commit") or ""
    return {LABEL: space["id"], "spacehooks.build": str(build_id), "spacehooks.commit": commit,
            "spacehooks.repo": str(space.get("repo_path") or "")}


def _disk(settings, limits: dict) -> dict:
    """Byte caps on every place a Space writes: Podman's overlay on ext4 has no size limit, so
    the root is read-only and home (copied from the image at each start) and /tmp are tmpfs
    of a fixed size; conmon cuts the container's own log at run.log_bytes."""
    return dict(
        read_only=True, read_write_tmpfs=False,
        mounts=[{"type": "tmpfs", "source": "tmpfs", "target": "/home/user", "size": f"{int(limits['disk_mb'])}m",
                 "chown": True},
                {"type": "tmpfs", "source": "tmpfs", "target": "/tmp", "size": f"{int(limits['tmp_mb'])}m",
                 "mode": "1777"}],
        log_config={"Type": "k8s-file", "Config": {"size": int(settings["run.log_bytes"])}},
    )


def create_kwargs(settings, st: state_mod.State, space: dict, image: str, config: dict, build_id, port: int) -> dict:
    limits = limits_for(settings, space)
    secrets = state_mod.read_secrets(settings.home, space["id"])
    variables = st.variables(space["id"])
    app_port = spaceconfig.app_port(config)
    nofile = settings["run.nofile"]
    disk = _disk(settings, limits)
    # the private /dev/shm (user namespaces, see SHM_MOUNT) beside the size-capped home and /tmp
    disk["mounts"] = [dict(SHM_MOUNT), *disk["mounts"], *trust.run_mounts(settings)]
    kwargs = dict(
        image=image, name=container_name(space["id"], build_id),
        labels=labels(st, space, build_id),
        environment=environment(settings, space, config, limits, secrets, variables),
        ports={f"{app_port}/tcp": ("127.0.0.1", port)},
        mem_limit=f"{int(limits['memory_mb'])}m", memswap_limit=f"{int(limits['memory_mb'])}m",
        cpu_period=100000, cpu_quota=int(float(limits["cpus"]) * 100000), pids_limit=int(limits["pids"]),
        user="1000", no_new_privileges=True, cap_drop=["ALL"], init=True,
        # supervise.py restarts a crashed app (with backoff) and tells when it gives up
        restart_policy={"Name": "no"},
        ulimits=[{"Name": "nofile", "Soft": nofile, "Hard": nofile},
                 {"Name": "nproc", "Soft": int(limits["pids"]) * 4, "Hard": int(limits["pids"]) * 4}],
        networks={netfence.network_name(settings, space["id"]): {}}, **USERNS, ipc_mode="none",
        detach=True, **disk,
    )
    if config.get("sdk") == "streamlit":
        path = _streamlit_secrets(settings, space["id"], secrets)
        kwargs["mounts"] += [{"type": "bind", "source": str(path), "target": "/home/user/app/.streamlit/secrets.toml",
                             "read_only": True, "chown": True}]
    data = storage.run_fields(settings, space["id"])
    if data:  # /data shared by blue and green: one fixed id range for all the Space's containers
        kwargs["mounts"].append(data["mount"])
        kwargs["environment"].update(data["env"])
        kwargs.update(data["userns"])
    devices = _gpu_devices(settings, space, limits)
    if devices:
        kwargs["devices"] = devices
    return kwargs
