"""The Podman engine: the only module that imports podman-py (containers and images), with
raw REST (podman_rest, podman_build) for streamed builds, logs, states, stats and networks.

A RunSpec becomes podman-py's create() arguments here: user namespaces, the private /dev/shm
and the k8s-file log are Podman's ways of honouring the spec's fences.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping

from podman import PodmanClient
from podman import errors as podman_errors

from spacehooks.engine import podman_build, podman_images, podman_rest as rest
from spacehooks.engine.base import Engine, EngineError, NotFound, ServiceLost
from spacehooks.engine.spec import (BuildRequest, BuildResult, ContainerState, ContainerStats, EngineInfo,
                                    FileMount, NetworkInfo, RunSpec)
from spacehooks.errors import SpaceError

# Podman picks a free host range from /etc/subuid's `containers` entry for each container
# (the REST API needs the mapping request spelled out; the CLI's --userns=auto does this).
USERNS = {"userns_mode": "auto", "idmappings": {"AutoUserNs": True, "AutoUserNsOpts": {"Size": 65536}}}
# With a user namespace, Podman 4.3's own /dev/shm mount (userdata/shm on the host) races its
# clean-up when a container is removed ("device or resource busy", the container's storage
# left behind, its image then impossible to remove); a private IPC namespace with /dev/shm
# as the container's own tmpfs has no host mount to race.
SHM_TARGET = "/dev/shm"


def make(settings) -> "PodmanEngine":
    return PodmanEngine(settings["podman_url"], Path(settings.home))


@contextlib.contextmanager
def translated(url: str):
    """podman-py's exceptions as the engine package's: callers never see podman-py's types."""
    try:
        yield
    except (podman_errors.NotFound, podman_errors.ImageNotFound) as exc:
        raise NotFound(str(exc)) from exc
    except podman_errors.APIError as exc:
        # Podman 4.3 answers 500, not 404, for a container removed between a list and a look
        if "no such container" in str(exc):
            raise NotFound(str(exc)) from exc
        raise EngineError(str(exc)) from exc
    except OSError as exc:  # requests' ConnectionError: the service went away
        raise ServiceLost(f"Podman service not reachable at {url} ({type(exc).__name__})") from exc


def _file_source(home: Path, space_id: str, mount: FileMount) -> str:
    """A content file written under SPACEHOOKS_HOME/run/<space>/ for a bind mount."""
    if mount.content is None:
        return str(mount.source)
    folder = home / "run" / space_id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / Path(mount.target).name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    with os.fdopen(fd, "wb") as fh:
        fh.write(mount.content)
    if os.geteuid() != 0:
        path.chmod(0o444)
    # as root it stays 0400: the mount's chown option hands it to the host id uid 1000 maps to
    return str(path)


def create_kwargs(spec: RunSpec, home: Path) -> dict:
    """podman-py's containers.create() arguments for spec."""
    mounts = [{"type": "tmpfs", "target": SHM_TARGET, "size": f"{int(spec.shm_mb) * 1024}k"},
              {"type": "tmpfs", "source": "tmpfs", "target": spec.home, "size": f"{int(spec.disk_mb)}m", "chown": True},
              {"type": "tmpfs", "source": "tmpfs", "target": "/tmp", "size": f"{int(spec.tmp_mb)}m", "mode": "1777"}]
    for mount in spec.files:
        mounts.append({"type": "bind", "source": _file_source(home, spec.space_id, mount), "target": mount.target,
                       "read_only": True, **({"chown": True} if mount.owned_by_user else {})})
    kwargs = dict(
        image=spec.image, name=spec.name, labels=dict(spec.labels),
        environment={**spec.env, **spec.secrets},
        ports={f"{spec.app_port}/tcp": (spec.host_ip, spec.host_port)},
        mem_limit=f"{int(spec.memory_mb)}m", memswap_limit=f"{int(spec.memory_mb)}m",
        cpu_period=100000, cpu_quota=int(float(spec.cpus) * 100000), pids_limit=int(spec.pids),
        user=spec.user, no_new_privileges=spec.no_new_privileges, cap_drop=list(spec.cap_drop), init=spec.init,
        restart_policy={"Name": spec.restart},
        ulimits=[{"Name": "nofile", "Soft": spec.nofile, "Hard": spec.nofile},
                 {"Name": "nproc", "Soft": spec.nproc_limit, "Hard": spec.nproc_limit}],
        networks={spec.network: {}}, ipc_mode="none", detach=True,
        read_only=spec.read_only_root, read_write_tmpfs=False, mounts=mounts,
        # conmon cuts the container's own log at this size
        log_config={"Type": "k8s-file", "Config": {"size": int(spec.log_bytes)}},
    )
    if spec.data is not None:
        mounts.append({"type": "bind", "source": spec.data.source, "target": spec.data.target})
    if spec.userns is not None:  # a fixed range (storage shared by blue and green), never auto
        mapping = [{"container_id": 0, "host_id": int(spec.userns.host_id), "size": int(spec.userns.size)}]
        kwargs.update(userns_mode="private", idmappings={"UIDMap": mapping, "GIDMap": mapping})
    elif spec.userns_auto:
        kwargs.update(USERNS)
    if spec.gpu_devices:
        kwargs["devices"] = list(spec.gpu_devices)
    return kwargs


def _state(attrs: dict) -> ContainerState:
    state = attrs.get("State") or {}
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    port = None
    for bindings in ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).values():
        for binding in bindings or []:
            port = int(binding.get("HostPort") or 0) or port
    return ContainerState(
        name=attrs.get("Name", "").lstrip("/"), status=state.get("Status") or "", running=bool(state.get("Running")),
        exit_code=state.get("ExitCode"), oom_killed=bool(state.get("OOMKilled")),
        started_at=state.get("StartedAt"), finished_at=state.get("FinishedAt"), labels=labels,
        image=attrs.get("ImageName") or (attrs.get("Config") or {}).get("Image"), host_port=port, id=attrs.get("Id"))


class PodmanEngine(podman_images.Images, Engine):
    name = "podman"

    def __init__(self, url: str, home: Path):
        self.url, self.home = url, home
        self._client: PodmanClient | None = None

    def client(self) -> PodmanClient:
        """One per engine: a start's state polls reuse its connection pool."""
        if self._client is None:
            self._client = PodmanClient(base_url=self.url, timeout=120)
        return self._client

    def ping(self) -> str:
        return rest.ping(self.url)

    def info(self) -> EngineInfo:
        data = rest.get_json(self.url, f"{rest.API}/info")
        host = data.get("host", {})
        controllers = host.get("cgroupControllers")
        return EngineInfo(name="podman", version=(data.get("version") or {}).get("Version", "?"),
                          runtime=(host.get("ociRuntime") or {}).get("name", "?"),
                          cgroup_version=host.get("cgroupVersion", "?"),
                          cgroup_controllers=None if controllers is None else tuple(controllers))

    def build(self, request: BuildRequest, on_line: Callable[[str], None] = lambda line: None,
              should_stop: Callable[[], bool] = lambda: False) -> BuildResult:
        return podman_build.build(self.url, request, on_line, should_stop)

    def run(self, spec: RunSpec) -> str:
        kwargs = create_kwargs(spec, self.home)
        with translated(self.url):
            container = self.client().containers.create(**kwargs)
        try:
            with translated(self.url):
                container.start()
        except BaseException:
            self.remove(spec.name)
            raise
        return spec.name

    def start(self, name: str) -> None:
        status, body = rest.request(self.url, "POST", f"{rest.API}/containers/{rest.quote(name)}/start", timeout=60)
        if status == 404:
            raise NotFound(f"no container {name}")
        if status >= 400:
            raise SpaceError(f"Podman could not start {name}: HTTP {status}: {body[:300].decode(errors='replace')}")

    def stop(self, name: str, timeout: float = 10) -> None:
        with translated(self.url):
            self.client().containers.get(name).stop(timeout=timeout)

    def remove(self, name: str, stop_timeout: float = 10) -> None:
        client = self.client()
        try:
            client.containers.get(name).stop(timeout=stop_timeout)
        except podman_errors.NotFound:
            return
        except Exception:  # a container that will not stop is removed by force below
            pass
        try:
            with translated(self.url):
                client.containers.get(name).remove(force=True)
        except NotFound:  # removed meanwhile (reap in the worker and in a command at once)
            pass

    def state(self, name: str) -> ContainerState | None:
        try:
            with translated(self.url):
                return _state(self.client().containers.get(name).attrs)
        except NotFound:
            return None

    def states(self, label: str) -> dict[str, ContainerState]:
        """Only the stopped ones are inspected (the list does not say whether the kernel's OOM
        killer ended them)."""
        out = {}
        for entry in rest.get_json(self.url, f"{rest.API}/containers/json?{rest.labelled(label, all='true')}"):
            name = (entry.get("Names") or [""])[0]
            running = entry.get("State") == "running"
            out[name] = ContainerState(name=name, status=entry.get("State") or "", running=running,
                                       exit_code=entry.get("ExitCode"), finished_at=entry.get("ExitedAt"),
                                       labels=entry.get("Labels") or {}, image=entry.get("Image"), id=entry.get("Id"))
            if not running:
                try:
                    attrs = rest.get_json(self.url, f"{rest.API}/containers/{rest.quote(name)}/json")
                except (SpaceError, NotFound):  # removed meanwhile
                    continue
                out[name] = _state(attrs)
        return out

    def containers(self, label: str) -> list[ContainerState]:
        client = self.client()
        out = []
        with translated(self.url):
            listed = client.containers.list(all=True, filters={"label": label})
        for container in listed:
            try:
                with translated(self.url):
                    out.append(_state(client.containers.get(container.id).attrs))
            except NotFound:  # removed meanwhile
                continue
        return out

    def stats(self) -> dict[str, ContainerStats]:
        """One call for all (naming one that has just stopped would fail the whole call)."""
        data = rest.get_json(self.url, f"{rest.API}/containers/stats?stream=false")
        if data.get("Error"):
            raise SpaceError(f"Podman container stats: {data['Error']}")
        return {s.get("Name", ""): ContainerStats(name=s.get("Name", ""), memory_bytes=s.get("MemUsage") or 0,
                                                  memory_limit_bytes=s.get("MemLimit") or 0,
                                                  cpu_seconds=(s.get("CPUNano") or 0) / 1e9)
                for s in data.get("Stats") or ()}

    def log_tail(self, name: str, lines: int) -> str:
        text = rest.logs(self.url, name, {"tail": str(lines)})
        if not text.strip():
            # Podman 4.3 sometimes answers a tail of a container that has just exited with a bare
            # newline while the whole log holds the lines: ask for it all and cut here
            text = "".join(rest.logs(self.url, name, {}).splitlines(keepends=True)[-lines:])
        return text

    def follow_logs(self, name: str, since: float = 0, follow: bool = True) -> Iterator[bytes]:
        return rest.follow_logs(self.url, name, since, follow)

    def remove_all(self, label: str, image_repo: str) -> None:
        client = self.client()
        with translated(self.url):
            listed = client.containers.list(all=True, filters={"label": label})
        for container in listed:
            try:
                with translated(self.url):
                    container.remove(force=True)
            except NotFound:
                pass
        for image in self.images(image_repo):
            try:
                self.remove_image(image.id, force=True)
            except NotFound:
                pass

    def probe(self, image: str, command: list[str], *, files: tuple[FileMount, ...] = (),
              env: Mapping[str, str] | None = None, devices: tuple[str, ...] = ()) -> tuple[bool, str]:
        """Created, started, waited for and removed (podman-py's run(remove=True) can lose the output)."""
        mounts = [{"type": "bind", "source": str(f.source), "target": f.target, "read_only": True} for f in files]
        client = self.client()
        try:
            with translated(self.url):
                container = client.containers.create(image, command, mounts=mounts, environment=dict(env or {}),
                                                     **({"devices": list(devices)} if devices else {}))
        except EngineError as exc:
            return False, str(exc)
        try:
            with translated(self.url):
                container.start()
                code = container.wait()
                out = container.logs(stdout=True, stderr=True)
        except EngineError as exc:
            return False, str(exc)
        finally:
            with contextlib.suppress(Exception):
                container.remove(force=True)
        text = (out if isinstance(out, bytes) else b"".join(out)).decode(errors="replace")
        return code == 0, text

    def ensure_network(self, name: str, interface: str, labels: Mapping[str, str]) -> NetworkInfo:
        """No DNS server of its own (aardvark would listen on the bridge, i.e. on the host): the
        containers get the host's resolvers. Podman picks a free subnet."""
        network = rest.ensure_network(self.url, name, interface, labels)
        return NetworkInfo(name=network.get("name", name), interface=network.get("network_interface"),
                           labels=network.get("labels") or {})

    def networks(self, label: str) -> list[NetworkInfo]:
        return [NetworkInfo(name=n["name"], interface=n.get("network_interface"), labels=n.get("labels") or {})
                for n in rest.get_json(self.url, f"{rest.API}/networks/json?{rest.labelled(label)}")]

    def remove_network(self, name: str) -> None:
        status, body = rest.request(self.url, "DELETE", f"{rest.API}/networks/{rest.quote(name)}?force=true")
        if status >= 400 and status != 404:
            raise SpaceError(f"Podman network {name}: HTTP {status}: {body[:300].decode(errors='replace')}")
