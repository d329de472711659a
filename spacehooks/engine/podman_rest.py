"""Podman's REST API over its unix socket, for what podman-py does badly: streamed builds,
logs, networks, container states in one call, stats.

podman-py's images.build() buffers the whole log until the build ends, so builds POST the
context tarball to /libpod/build ourselves and read the JSON lines as they come.
"""
from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from typing import Iterable, Iterator

from spacehooks.engine.base import NotFound, Unreachable
from spacehooks.errors import SpaceError

API = "/v4.0.0/libpod"


def socket_path(url: str) -> str:
    if not url.startswith("unix://"):
        raise SpaceError(f"podman_url {url!r} is not supported", hint="use a unix:///path/podman.sock URL")
    return url.removeprefix("unix://")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def unreachable(url: str, exc: Exception) -> Unreachable:
    return Unreachable(f"Podman service not reachable at {url} ({exc})",
                       hint="start it with contrib/podman/start-service.sh or set podman_url")


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def ping(url: str) -> str:
    try:
        conn = UnixConnection(socket_path(url), 5)
        conn.request("GET", "/_ping")
        return conn.getresponse().read().decode(errors="replace")
    except OSError as exc:
        raise unreachable(url, exc) from exc


def request(url: str, method: str, path: str, payload: dict | None = None,
            timeout: float = 30) -> tuple[int, bytes]:
    try:
        conn = UnixConnection(socket_path(url), timeout)
        conn.request(method, path, body=None if payload is None else json.dumps(payload),
                     headers={"Content-Type": "application/json"} if payload is not None else {})
        response = conn.getresponse()
        return response.status, response.read()
    except OSError as exc:
        raise unreachable(url, exc) from exc


def get_json(url: str, path: str):
    status, body = request(url, "GET", path)
    if status == 404:
        raise NotFound(f"Podman {path}: {body[:300].decode(errors='replace')}")
    if status >= 400:
        raise SpaceError(f"Podman {path}: HTTP {status}: {body[:300].decode(errors='replace')}")
    return json.loads(body)


def ensure_network(url: str, name: str, interface: str, labels) -> dict:
    """The bridge network `name` (made when missing) with its bridge called `interface`."""
    quoted = quote(name)
    status, body = request(url, "GET", f"{API}/networks/{quoted}/json")
    if status == 404:
        status, body = request(url, "POST", f"{API}/networks/create", {
            "name": name, "driver": "bridge", "network_interface": interface,
            "dns_enabled": False, "ipv6_enabled": False, "internal": False, "labels": dict(labels)})
        if status == 409:  # made meanwhile by another process
            status, body = request(url, "GET", f"{API}/networks/{quoted}/json")
    if status >= 400:
        raise SpaceError(f"Podman network {name}: HTTP {status}: {body[:300].decode(errors='replace')}")
    network = json.loads(body)
    if network.get("network_interface") != interface:
        raise SpaceError(f"Podman network {name} uses bridge {network.get('network_interface')}, not {interface}",
                         hint=f"remove it (`podman network rm {name}`); spacehooks makes it again")
    return network


def labelled(label: str, **params: str) -> str:
    return urllib.parse.urlencode({**params, "filters": json.dumps({"label": [label]})})


def json_stream(response) -> Iterable[dict]:
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


def logs(url: str, name: str, params: dict) -> str:
    query = urllib.parse.urlencode({"stdout": "true", "stderr": "true", **params})
    try:
        conn = UnixConnection(socket_path(url), 30)
        conn.request("GET", f"{API}/containers/{quote(name)}/logs?{query}")
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise unreachable(url, exc) from exc
    if response.status >= 400:
        return ""
    return demux(body).decode(errors="replace")


def follow_logs(url: str, name: str, since: float = 0, follow: bool = True) -> Iterator[bytes]:
    params = {"stdout": "true", "stderr": "true", "follow": "true" if follow else "false"}
    if since:
        params["since"] = f"{since:.6f}"
    query = urllib.parse.urlencode(params)
    try:
        conn = UnixConnection(socket_path(url), None)
        conn.request("GET", f"{API}/containers/{quote(name)}/logs?{query}")
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


def demux(body: bytes) -> bytes:
    """Undo Docker's stream framing: 8-byte headers (stream, 0, 0, 0, big-endian size)."""
    out, i = [], 0
    while i + 8 <= len(body) and body[i] in (0, 1, 2) and body[i + 1:i + 4] == b"\0\0\0":
        size = int.from_bytes(body[i + 4:i + 8], "big")
        out.append(body[i + 8:i + 8 + size])
        i += 8 + size
    return b"".join(out) if out else body
