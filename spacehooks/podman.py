"""The only module that talks to Podman: podman-py for containers and images, raw REST for builds.

podman-py's images.build() buffers the whole log until the build ends, so builds POST the
context tarball to /libpod/build ourselves and read the JSON lines as they come.
"""
from __future__ import annotations

import http.client
import io
import json
import socket
import tarfile
import urllib.parse
from pathlib import Path
from typing import Callable, Iterable

from spacehooks.errors import SpaceError

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
    try:
        conn = _UnixConnection(_socket_path(url), 30)
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise unreachable(url, exc) from exc
    if response.status >= 400:
        raise SpaceError(f"Podman {path}: HTTP {response.status}: {body[:300].decode(errors='replace')}")
    return json.loads(body)


# Buildah keys the cache of a folder COPY on a tar of it, times included, and the context is
# written afresh for every build: fixed times keep unchanged inputs cached.
CONTEXT_MTIME = 315532800  # 1980-01-01, as reproducible-build tools use


def _same_times(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = CONTEXT_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _tar_context(context: Path, extra: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for child in sorted(context.iterdir()):
            tar.add(str(child), arcname=child.name, filter=_same_times)
        for name, data in extra.items():
            info_ = tarfile.TarInfo(name)
            info_.size = len(data)
            info_.mode = 0o600
            tar.addfile(info_, io.BytesIO(data))
    return buf.getvalue()


def build(settings, context: Path, tag: str, *, containerfile: str = "Containerfile",
          no_cache: bool = False, secrets: dict[str, bytes] | None = None,
          on_line: Callable[[str], None] = lambda line: None, timeout: float = 3600,
          should_stop: Callable[[], bool] = lambda: False, confine: dict[str, str] | None = None) -> str:
    """Build context/containerfile as tag, calling on_line for every log line; returns the image id.

    confine: limit and privilege parameters of Podman's build call for every RUN step
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
    if secrets:
        params["secrets"] = json.dumps([f"id={name},src=spacehooks-secret-{name}" for name in secrets])
    body = _tar_context(context, extra)
    url = settings["podman_url"]
    try:
        conn = _UnixConnection(_socket_path(url), timeout)
        conn.request("POST", f"{API}/build?{urllib.parse.urlencode(params)}", body=body,
                     headers={"Content-Type": "application/x-tar"})
        response = conn.getresponse()
    except OSError as exc:
        raise unreachable(url, exc) from exc
    image_id, error = None, None
    try:
        for record in _json_stream(response):
            if should_stop():
                raise BuildStopped()
            if "stream" in record:
                for line in record["stream"].splitlines():
                    on_line(line)
                    # libpod ends a good build with the bare image id on its own line
                    if len(line.strip()) == 64 and all(c in "0123456789abcdef" for c in line.strip()):
                        image_id = line.strip()
            if record.get("error"):
                error = record["error"].strip()
            if record.get("aux", {}).get("ID"):
                image_id = record["aux"]["ID"]
    except socket.timeout as exc:
        raise SpaceError(f"build timed out after {timeout:.0f}s",
                         hint="make the build faster or raise build.timeout_seconds") from exc
    finally:
        conn.close()
    if response.status >= 400 and not error:
        error = f"HTTP {response.status}"
    if error or not image_id:
        raise BuildFailed(error or "the build ended without an image")
    return image_id


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
    url = settings["podman_url"]
    query = urllib.parse.urlencode({"stdout": "true", "stderr": "true", "tail": str(lines)})
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
    except OSError:  # the service went away: the caller follows again later
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
