"""Builds on Podman: the context as a tarball POSTed to /libpod/build, the log read as it comes.

Secrets travel inside the context tarball; the service moves each one out of the context
before the build starts, so they are never in a layer (podman's remote build).
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
from typing import Callable, Iterator

from spacehooks.engine import podman_rest as rest
from spacehooks.engine.base import BuildFailed, BuildStopped, ServiceLost
from spacehooks.engine.spec import BuildRequest, BuildResult
from spacehooks.errors import SpaceError

# Layer cache is only reused with the OCI manifest format (PLATFORM.md).
OCI_FORMAT = "application/vnd.oci.image.manifest.v1+json"
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


def params(request: BuildRequest) -> dict[str, str]:
    """The build call's query. RUN steps join request.network; without one they would share the
    host's network (the remote API's default in Podman 4.3), host listeners on 127.0.0.1 included."""
    out = {
        "dockerfile": request.containerfile, "t": request.tag, "nocache": "true" if request.no_cache else "false",
        "outputformat": OCI_FORMAT, "layers": "true", "rm": "true", "forcerm": "true",
    }
    if request.cgroup_parent:
        out["cgroupparent"] = request.cgroup_parent
    if request.drop_caps:
        out["dropcaps"] = json.dumps(list(request.drop_caps))
    if request.cpus > 0:
        out.update(cpuperiod="100000", cpuquota=str(int(request.cpus * 100000)))
    if request.network:  # networkmode 2 is buildah's NetworkEnabled; the path names the network
        out["networkmode"] = "2"
        out["nsoptions"] = json.dumps([{"Name": "network", "Host": False, "Path": request.network}])
    if request.secrets:
        out["secrets"] = json.dumps([f"id={name},src=spacehooks-secret-{name}" for name in request.secrets])
    return out


def _timed_out(timeout: float) -> SpaceError:
    return SpaceError(f"build timed out after {timeout:.0f}s",
                      hint="make the build faster or raise build.timeout_seconds")


def build(url: str, request: BuildRequest, on_line: Callable[[str], None],
          should_stop: Callable[[], bool]) -> BuildResult:
    extra = {f"spacehooks-secret-{name}": value for name, value in request.secrets.items()}
    body = _tar_context(request.context, extra)
    timeout = request.timeout
    try:
        conn = rest.UnixConnection(rest.socket_path(url), timeout)
        # chunked: the tar is made as it is sent, never whole in memory
        conn.request("POST", f"{rest.API}/build?{urllib.parse.urlencode(params(request))}", body=body,
                     headers={"Content-Type": "application/x-tar"}, encode_chunked=True)
        response = conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, socket.timeout):
            raise _timed_out(timeout) from exc
        raise ServiceLost(f"Podman service not reachable at {url} ({exc})") from exc
    image_id, error = None, None
    try:
        for record in rest.json_stream(response):
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
            elif response.status >= 400 and record.get("message"):  # refused before building
                error = str(record["message"]).strip()
            if record.get("aux", {}).get("ID"):
                image_id = record["aux"]["ID"]
    except socket.timeout as exc:
        raise _timed_out(timeout) from exc
    except (OSError, http.client.HTTPException) as exc:  # the service went away mid-build
        raise ServiceLost(f"the Podman service went away during the build ({type(exc).__name__})") from exc
    finally:
        conn.close()
    if response.status >= 400 and not error:
        error = f"HTTP {response.status}"
    if not error and not image_id and not _reachable(url):
        raise ServiceLost("the Podman service went away during the build")
    if error or not image_id:
        raise BuildFailed(error or "the build ended without an image")
    return BuildResult(image_id=image_id, tag=request.tag)


def _reachable(url: str) -> bool:
    try:
        rest.ping(url)
        return True
    except SpaceError:
        return False
