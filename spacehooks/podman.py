"""The only module that talks to Podman: podman-py for containers and images, raw REST for builds.

podman-py's images.build() buffers the whole log until the build ends, so builds POST the
context tarball to /libpod/build ourselves and read the JSON lines as they come.
"""
from __future__ import annotations

import http.client
import io
import json
import os
import socket
import tarfile
import urllib.parse
from pathlib import Path
from typing import Callable, Iterable, Iterator

from spacehooks.errors import SpaceError
from spacehooks.logs import Lines

API = "/v4.0.0/libpod"
# Layer cache is only reused with the OCI manifest format (PLATFORM.md).
OCI_FORMAT = "application/vnd.oci.image.manifest.v1+json"


def _socket_path(url: str) -> str:
    if not url.startswith("unix://"):
        raise SpaceError(f"podman_url {url!r} is not supported", hint="use a unix:///path/podman.sock URL")
    return url.removeprefix("unix://")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def unreachable(url: str, exc: Exception) -> SpaceError:
    return SpaceError(f"Podman service not reachable at {url} ({exc})",
                      hint="start it with contrib/podman/start-service.sh or set podman_url")


def client(settings):
    from podman import PodmanClient
    return PodmanClient(base_url=settings["podman_url"], timeout=120)


def remove_all(settings, label: str, image_repo: str) -> None:
    """Remove every container with the label and every image of image_repo; one that is gone
    meanwhile (the worker retiring it, say) is not an error."""
    from podman.errors import NotFound
    podman_client = client(settings)
    for container in podman_client.containers.list(all=True, filters={"label": label}):
        try:
            container.remove(force=True)
        except NotFound:
            pass
    for image in podman_client.images.list(name=image_repo):
        try:
            podman_client.images.remove(image.id, force=True)
        except NotFound:
            pass


def container_or_none(podman_client, name: str):
    """The container, or None when it is gone (removed by hand or by another program)."""
    from podman.errors import NotFound
    try:
        return podman_client.containers.get(name)
    except NotFound:
        return None


def copy_out(settings, image: str, path: str, dest: Path, limit: int) -> bool:
    """The folder `path` of an image, as the tar Podman makes of it, written to dest; False when
    the image has no such path. The image never runs: a container is created, read and
    removed. More than `limit` bytes is refused."""
    from podman.errors import NotFound
    podman_client = client(settings)
    container = podman_client.containers.create(image, command=["true"], labels={"spacehooks.copy-out": "1"})
    try:
        try:
            stream, _ = container.get_archive(path)
        except NotFound:
            return False
        written = 0
        with open(dest, "wb") as fh:
            for chunk in stream:
                written += len(chunk)
                if written > limit:
                    raise SpaceError(f"{path} in the built image holds more than {limit // 2**20} MB",
                                     hint="build less, or raise build.disk_mb")
                fh.write(chunk)
        return True
    finally:
        try:
            container.remove(force=True)
        except NotFound:
            pass


def remove_image(settings, reference: str) -> None:
    """Remove one image by name; one already gone is not an error."""
    from podman.errors import NotFound
    try:
        client(settings).images.remove(reference, force=True)
    except NotFound:
        pass


def probe(settings, image: str, command: list[str], *, mounts: list[dict], environment: dict) -> tuple[bool, str]:
    """A short command in a throwaway container (doctor's checks): whether it succeeded, and its output."""
    from podman.errors import APIError, ContainerError
    try:
        out = client(settings).containers.run(image, command, remove=True, stdout=True, stderr=True,
                                               mounts=mounts, environment=environment)
    except ContainerError as exc:
        err = exc.stderr
        return False, err.decode(errors="replace") if isinstance(err, bytes) else "".join(
            x.decode(errors="replace") if isinstance(x, bytes) else str(x) for x in (err or []))
    except APIError as exc:
        return False, str(exc)
    return True, out.decode(errors="replace") if isinstance(out, bytes) else ""


def ping(url: str) -> str:
    try:
        conn = _UnixConnection(_socket_path(url), 5)
        conn.request("GET", "/_ping")
        return conn.getresponse().read().decode(errors="replace")
    except OSError as exc:
        raise unreachable(url, exc) from exc


def info(settings) -> dict:
    return _get_json(settings["podman_url"], f"{API}/info")


def _get_json(url: str, path: str):
    status, body = _request(url, "GET", path)
    if status >= 400:
        raise SpaceError(f"Podman {path}: HTTP {status}: {body[:300].decode(errors='replace')}")
    return json.loads(body)


def _request(url: str, method: str, path: str, payload: dict | None = None) -> tuple[int, bytes]:
    try:
        conn = _UnixConnection(_socket_path(url), 30)
        conn.request(method, path, body=None if payload is None else json.dumps(payload),
                     headers={"Content-Type": "application/json"} if payload is not None else {})
        response = conn.getresponse()
        return response.status, response.read()
    except OSError as exc:
        raise unreachable(url, exc) from exc


def ensure_network(settings, name: str, interface: str, labels: dict[str, str]) -> dict:
    """The bridge network `name` (made when missing) with its bridge called `interface`.

    No DNS server of its own (aardvark would listen on the bridge, i.e. on the host): the
    containers get the host's resolvers. Podman picks a free subnet."""
    url = settings["podman_url"]
    quoted = urllib.parse.quote(name)
    status, body = _request(url, "GET", f"{API}/networks/{quoted}/json")
    if status == 404:
        status, body = _request(url, "POST", f"{API}/networks/create", {
            "name": name, "driver": "bridge", "network_interface": interface,
            "dns_enabled": False, "ipv6_enabled": False, "internal": False, "labels": labels})
        if status == 409:  # made meanwhile by another process
            status, body = _request(url, "GET", f"{API}/networks/{quoted}/json")
    if status >= 400:
        raise SpaceError(f"Podman network {name}: HTTP {status}: {body[:300].decode(errors='replace')}")
    network = json.loads(body)
    if network.get("network_interface") != interface:
        raise SpaceError(f"Podman network {name} uses bridge {network.get('network_interface')}, not {interface}",
                         hint=f"remove it (`podman network rm {name}`); spacehooks makes it again")
    return network


def networks(settings, label: str) -> list[dict]:
    """Networks carrying label (`key=value`)."""
    query = urllib.parse.urlencode({"filters": json.dumps({"label": [label]})})
    return _get_json(settings["podman_url"], f"{API}/networks/json?{query}")


def remove_network(settings, name: str) -> None:
    """Remove a network, with any container still on it; gone already is fine."""
    status, body = _request(settings["podman_url"], "DELETE", f"{API}/networks/{urllib.parse.quote(name)}?force=true")
    if status >= 400 and status != 404:
        raise SpaceError(f"Podman network {name}: HTTP {status}: {body[:300].decode(errors='replace')}")


def container_states(settings, label: str) -> dict[str, dict]:
    """Every container carrying `label` (running or not): name -> {running, exit_code, oom, finished}.
    Only the stopped ones are inspected (the list does not say whether the kernel's OOM killer
    ended them)."""
    url = settings["podman_url"]
    query = urllib.parse.urlencode({"all": "true", "filters": json.dumps({"label": [label]})})
    out = {}
    for entry in _get_json(url, f"{API}/containers/json?{query}"):
        name = (entry.get("Names") or [""])[0]
        running = entry.get("State") == "running"
        out[name] = {"running": running, "exit_code": entry.get("ExitCode"), "oom": False,
                     "finished": entry.get("ExitedAt"), "status": entry.get("State")}
        if not running:
            try:
                state = _get_json(url, f"{API}/containers/{urllib.parse.quote(name)}/json").get("State", {})
            except SpaceError:  # removed meanwhile
                continue
            out[name].update(exit_code=state.get("ExitCode"), oom=bool(state.get("OOMKilled")),
                             finished=state.get("FinishedAt"), status=state.get("Status"))
    return out


def container_stats(settings) -> dict[str, dict]:
    """Running containers' resource use, one call for all of them (naming one that has just
    stopped would fail the whole call): name -> {memory_bytes, memory_limit_bytes, cpu_seconds}."""
    data = _get_json(settings["podman_url"], f"{API}/containers/stats?stream=false")
    if data.get("Error"):
        raise SpaceError(f"Podman container stats: {data['Error']}")
    return {s.get("Name", ""): {"memory_bytes": s.get("MemUsage") or 0, "memory_limit_bytes": s.get("MemLimit") or 0,
                                "cpu_seconds": (s.get("CPUNano") or 0) / 1e9}
            for s in data.get("Stats") or ()}


def start_container(settings, name: str) -> None:
    """Start an existing (stopped) container again, as it was created."""
    url = settings["podman_url"]
    try:
        conn = _UnixConnection(_socket_path(url), 60)
        conn.request("POST", f"{API}/containers/{urllib.parse.quote(name)}/start")
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise unreachable(url, exc) from exc
    if response.status >= 400:
        raise SpaceError(f"Podman could not start {name}: HTTP {response.status}: "
                         f"{body[:300].decode(errors='replace')}")


# Buildah keys the cache of a folder COPY on a tar of it, times included, and the context is
# written afresh for every build: fixed times keep unchanged inputs cached.
CONTEXT_MTIME = 315532800  # 1980-01-01, as reproducible-build tools use
CONTEXT_PIECE = 1 << 20  # read and sent at a time


def _same_times(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = CONTEXT_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _tar_context(context: Path, extra: dict[str, bytes]) -> Iterator[bytes]:
    """The context as a tar stream, in pieces sent as they are made: a file is read while it is
    sent, so a build holds one piece of it at a time whatever its size (a 2 GB LFS file)."""
    tar = tarfile.TarFile(fileobj=io.BytesIO(), mode="w")  # for its headers' format only
    pending = [(str(child), child.name) for child in sorted(context.iterdir(), reverse=True)]
    sent = 0
    while pending:
        path, arcname = pending.pop()
        info = tar.gettarinfo(path, arcname)
        if info is None:  # a socket or the like, as tar.add skips it
            continue
        head = _same_times(info).tobuf(tar.format, tar.encoding, tar.errors)
        sent += len(head)
        yield head
        if info.isreg():
            yield from _file_pieces(path, info.size)
            sent += info.size + (-info.size % tarfile.BLOCKSIZE)
            yield tarfile.NUL * (-info.size % tarfile.BLOCKSIZE)
        elif info.isdir():
            pending += [(os.path.join(path, name), f"{arcname}/{name}") for name in sorted(os.listdir(path), reverse=True)]
    for name, data in extra.items():
        info_ = tarfile.TarInfo(name)
        info_.size = len(data)
        info_.mode = 0o600
        head = info_.tobuf(tar.format, tar.encoding, tar.errors) + data + tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE)
        sent += len(head)
        yield head
    end = 2 * tarfile.BLOCKSIZE  # two empty blocks, then up to a whole record, as tarfile writes
    yield tarfile.NUL * (end + (-(sent + end) % tarfile.RECORDSIZE))


def _file_pieces(path: str, size: int) -> Iterator[bytes]:
    try:
        with open(path, "rb") as fh:
            left = size
            while left:
                piece = fh.read(min(CONTEXT_PIECE, left))
                if not piece:
                    raise SpaceError(f"{path}: changed while the build context was sent")
                left -= len(piece)
                yield piece
    except OSError as exc:  # not the service's fault: a ServiceLost would queue the build again
        raise SpaceError(f"cannot send {path} in the build context: {exc.strerror or exc}") from exc


def build(settings, context: Path, tag: str, *, containerfile: str = "Containerfile",
          no_cache: bool = False, secrets: dict[str, bytes] | None = None,
          on_line: Callable[[str], None] = lambda line: None, timeout: float = 3600,
          should_stop: Callable[[], bool] = lambda: False, network: str | None = None,
          confine: dict[str, str] | None = None) -> str:
    """Build context/containerfile as tag, calling on_line for every log line; returns the image id.

    RUN steps join `network`; without one they would share the host's network (the remote
    API's default in Podman 4.3), host listeners on 127.0.0.1 included. confine: limit and
    privilege parameters of Podman's build call for every RUN step
    (buildfence.BuildCgroup.params()).

    Secrets travel inside the context tarball; the service moves each one out of the
    context before the build starts, so they are never in a layer (podman's remote build).
    """
    secrets = secrets or {}
    extra = {f"spacehooks-secret-{name}": value for name, value in secrets.items()}
    params = {
        "dockerfile": containerfile, "t": tag, "nocache": "true" if no_cache else "false",
        "outputformat": OCI_FORMAT, "layers": "true", "rm": "true", "forcerm": "true",
        **(confine or {}),
    }
    if network:  # networkmode 2 is buildah's NetworkEnabled; the path names the network
        params["networkmode"] = "2"
        params["nsoptions"] = json.dumps([{"Name": "network", "Host": False, "Path": network}])
    if secrets:
        params["secrets"] = json.dumps([f"id={name},src=spacehooks-secret-{name}" for name in secrets])
    body = _tar_context(context, extra)
    url = settings["podman_url"]
    try:
        conn = _UnixConnection(_socket_path(url), timeout)
        # chunked: the tar is made as it is sent, never whole in memory
        conn.request("POST", f"{API}/build?{urllib.parse.urlencode(params)}", body=body,
                     headers={"Content-Type": "application/x-tar"}, encode_chunked=True)
        response = conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, socket.timeout):
            raise SpaceError(f"build timed out after {timeout:.0f}s",
                             hint="make the build faster or raise build.timeout_seconds") from exc
        raise ServiceLost(f"Podman service not reachable at {url} ({exc})") from exc
    image_id, error = None, None
    lines = Lines()
    try:
        for record in _json_stream(response):
            if should_stop():
                raise BuildStopped()
            text = record.get("stream", "")
            # buildah's own lines come whole: a step's unfinished last line ends where they begin
            flushed = lines.end() if text.startswith(BUILDAH_LINES) else []
            for line in flushed + lines.feed(text):
                on_line(line)
                # libpod ends a good build with the bare image id on its own line
                if len(line.strip()) == 64 and all(c in "0123456789abcdef" for c in line.strip()):
                    image_id = line.strip()
            if record.get("error"):
                error = record["error"].strip()
            elif response.status >= 400 and record.get("message"):  # refused before building
                error = str(record["message"]).strip()
            if record.get("aux", {}).get("ID"):
                image_id = record["aux"]["ID"]
    except socket.timeout as exc:
        raise SpaceError(f"build timed out after {timeout:.0f}s",
                         hint="make the build faster or raise build.timeout_seconds") from exc
    except (OSError, http.client.HTTPException) as exc:  # the service went away mid-build
        raise ServiceLost(f"the Podman service went away during the build ({type(exc).__name__})") from exc
    finally:
        conn.close()
    for line in lines.end():
        on_line(line)
    if response.status >= 400 and not error:
        error = f"HTTP {response.status}"
    if not error and not image_id and not reachable(url):
        raise ServiceLost("the Podman service went away during the build")
    if error or not image_id:
        raise BuildFailed(error or "the build ended without an image")
    return image_id


def reachable(url: str) -> bool:
    try:
        ping(url)
        return True
    except SpaceError:
        return False


class ServiceLost(Exception):
    """The Podman service went away: nothing is known about the Space's files; try again later."""


class Outage:
    """Backoff while the Podman service is down: one log line when it goes and one when it is
    back, instead of a traceback per container per pass."""

    FIRST, LONGEST = 2.0, 60.0

    def __init__(self, log, what: str):
        self.log, self.what = log, what
        self.since: float | None = None
        self._wait, self._next = 0.0, 0.0

    def due(self) -> bool:
        import time
        return self.since is None or time.monotonic() >= self._next

    def down(self, reason: str) -> None:
        import time
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("Podman service down (%s): %s paused, retrying with backoff", reason, self.what)
        self._wait = min(self.LONGEST, max(self.FIRST, self._wait * 2))
        self._next = time.monotonic() + self._wait

    def up(self) -> None:
        import time
        if self.since is not None:
            self.log.warning("Podman service back after %.0fs: %s resumed", time.monotonic() - self.since, self.what)
        self.since, self._wait = None, 0.0


BUILDAH_LINES = ("--> ", "STEP ", "COMMIT ")


class BuildFailed(Exception):
    """The build itself failed (the Space's files are at fault, not spacehooks)."""


class BuildStopped(Exception):
    """A newer push superseded the build while it ran."""


def _json_stream(response) -> Iterable[dict]:
    decoder = json.JSONDecoder()
    pending = ""
    while True:
        chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
        if not chunk:
            break
        pending += chunk.decode(errors="replace")
        while True:
            pending = pending.lstrip()
            if not pending:
                break
            try:
                record, end = decoder.raw_decode(pending)
            except json.JSONDecodeError:
                break
            pending = pending[end:]
            if isinstance(record, dict):
                yield record


def log_tail(settings, name: str, lines: int) -> str:
    """The container's last log lines, stdout and stderr interleaved as written."""
    text = _logs(settings, name, {"tail": str(lines)})
    if not text.strip():
        # Podman 4.3 sometimes answers a tail of a container that has just exited with a bare
        # newline while the whole log holds the lines: ask for it all and cut here
        text = "".join(_logs(settings, name, {}).splitlines(keepends=True)[-lines:])
    return text


def _logs(settings, name: str, params: dict) -> str:
    url = settings["podman_url"]
    query = urllib.parse.urlencode({"stdout": "true", "stderr": "true", **params})
    try:
        conn = _UnixConnection(_socket_path(url), 30)
        conn.request("GET", f"{API}/containers/{urllib.parse.quote(name)}/logs?{query}")
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise unreachable(url, exc) from exc
    if response.status >= 400:
        return ""
    return _demux(body).decode(errors="replace")


def follow_logs(settings, name: str, since: float = 0) -> Iterable[bytes]:
    """The container's output (stdout and stderr) from `since` on, chunk by chunk as written,
    until it stops. Nothing when the container is gone."""
    url = settings["podman_url"]
    params = {"stdout": "true", "stderr": "true", "follow": "true"}
    if since:
        params["since"] = f"{since:.6f}"
    query = urllib.parse.urlencode(params)
    try:
        conn = _UnixConnection(_socket_path(url), None)
        conn.request("GET", f"{API}/containers/{urllib.parse.quote(name)}/logs?{query}")
        response = conn.getresponse()
    except OSError as exc:
        raise unreachable(url, exc) from exc
    if response.status >= 400:
        response.read()
        return
    try:
        while True:  # Docker's stream framing: 8-byte header (stream, 0, 0, 0, big-endian size)
            header = response.read(8)
            if len(header) < 8:
                return
            yield response.read(int.from_bytes(header[4:8], "big"))
    except (OSError, http.client.HTTPException):  # the service went away: the caller follows again later
        return
    finally:
        conn.close()


def _demux(body: bytes) -> bytes:
    """Undo Docker's stream framing: 8-byte headers (stream, 0, 0, 0, big-endian size)."""
    out, i = [], 0
    while i + 8 <= len(body) and body[i] in (0, 1, 2) and body[i + 1:i + 4] == b"\0\0\0":
        size = int.from_bytes(body[i + 4:i + 8], "big")
        out.append(body[i + 8:i + 8 + size])
        i += 8 + size
    return b"".join(out) if out else body
