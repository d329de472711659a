"""An in-memory Engine for unit tests of the decisions above the engine (blue-green, stages).

Beside the real Podman engine, never instead of it: the tests of record run real containers.
A container's fate is scripted per run() call: `serve` answers HTTP on its host port (a tiny
server in this process), `exit` ends with a code, `oom` is killed for memory.
"""
from __future__ import annotations

import dataclasses
import http.server
import threading
from pathlib import Path
from typing import Callable, Iterator, Mapping

from spacehooks.engine import (BuildFailed, BuildRequest, BuildResult, ContainerState, ContainerStats, Engine,
                               EngineInfo, FileMount, ImageInfo, NetworkInfo, NotFound, RunSpec)


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class FakeEngine(Engine):
    name = "fake"

    def __init__(self):
        self.outcomes: list[tuple] = []  # what the next run()s do; empty: ("serve",)
        self.specs: list[RunSpec] = []  # every spec run, in order
        self.containers_: dict[str, ContainerState] = {}
        self.logs: dict[str, str] = {}
        self.servers: dict[str, http.server.ThreadingHTTPServer] = {}
        self.images_: dict[str, ImageInfo] = {}
        self.networks_: dict[str, NetworkInfo] = {}
        self.calls: list[tuple] = []

    # the service
    def ping(self) -> str:
        return "OK"

    def info(self) -> EngineInfo:
        return EngineInfo(name="fake", version="0")

    def build(self, request: BuildRequest, on_line: Callable[[str], None] = lambda line: None,
              should_stop: Callable[[], bool] = lambda: False) -> BuildResult:
        if not (Path(request.context) / request.containerfile).exists():
            raise BuildFailed(f"no {request.containerfile}")
        on_line(f"STEP 1/1: FROM scratch ({request.tag})")
        image_id = f"{len(self.images_) + 1:064x}"
        self.images_[request.tag] = ImageInfo(id=image_id, tags=(request.tag,))
        return BuildResult(image_id=image_id, tag=request.tag)

    # containers
    def run(self, spec: RunSpec) -> str:
        self.calls.append(("run", spec.name))
        self.specs.append(spec)
        outcome = self.outcomes.pop(0) if self.outcomes else ("serve",)
        state = ContainerState(name=spec.name, status="running", running=True, labels=dict(spec.labels),
                               image=spec.image, host_port=spec.host_port)
        if outcome[0] == "serve":
            server = http.server.ThreadingHTTPServer((spec.host_ip, spec.host_port), _Answer)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers[spec.name] = server
        elif outcome[0] == "exit":
            state = dataclasses.replace(state, status="exited", running=False, exit_code=outcome[1])
        elif outcome[0] == "oom":
            state = dataclasses.replace(state, status="exited", running=False, exit_code=137, oom_killed=True)
        self.logs[spec.name] = outcome[2] if len(outcome) > 2 else f"{spec.name} log\n"
        self.containers_[spec.name] = state
        return spec.name

    def _get(self, name: str) -> ContainerState:
        if name not in self.containers_:
            raise NotFound(f"no container {name}")
        return self.containers_[name]

    def start(self, name: str) -> None:
        self.containers_[name] = dataclasses.replace(self._get(name), status="running", running=True)

    def stop(self, name: str, timeout: float = 10) -> None:
        self._stop_server(name)
        self.containers_[name] = dataclasses.replace(self._get(name), status="exited", running=False, exit_code=0)

    def _stop_server(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server:
            server.shutdown()
            server.server_close()

    def remove(self, name: str, stop_timeout: float = 10) -> None:
        self.calls.append(("remove", name))
        self._stop_server(name)
        self.containers_.pop(name, None)

    def state(self, name: str) -> ContainerState | None:
        return self.containers_.get(name)

    def _matching(self, label: str) -> list[ContainerState]:
        key, _, value = label.partition("=")
        return [c for c in self.containers_.values() if key in c.labels and (not value or c.labels[key] == value)]

    def states(self, label: str) -> dict[str, ContainerState]:
        return {c.name: c for c in self._matching(label)}

    def containers(self, label: str) -> list[ContainerState]:
        return self._matching(label)

    def stats(self) -> dict[str, ContainerStats]:
        return {c.name: ContainerStats(c.name, 1 << 20, 1 << 30, 0.5) for c in self.containers_.values() if c.running}

    def log_tail(self, name: str, lines: int) -> str:
        return "".join(self.logs.get(name, "").splitlines(keepends=True)[-lines:])

    def follow_logs(self, name: str, since: float = 0, follow: bool = True) -> Iterator[bytes]:
        if name in self.logs:
            yield self.logs[name].encode()

    def remove_all(self, label: str, image_repo: str) -> None:
        for state in self._matching(label):
            self.remove(state.name)
        for tag in [t for t in self.images_ if t.startswith(image_repo + ":")]:
            del self.images_[tag]

    def probe(self, image: str, command: list[str], *, files: tuple[FileMount, ...] = (),
              env: Mapping[str, str] | None = None, devices: tuple[str, ...] = ()) -> tuple[bool, str]:
        return image in self.images_, ""

    # images
    def image(self, reference: str) -> ImageInfo | None:
        return self.images_.get(reference)

    def images(self, repo: str) -> list[ImageInfo]:
        return [i for t, i in self.images_.items() if t.startswith(repo + ":")]

    def remove_image(self, reference: str, force: bool = False) -> None:
        if self.images_.pop(reference, None) is None:
            raise NotFound(f"no image {reference}")

    def tag_image(self, reference: str, new_reference: str) -> None:
        if reference not in self.images_:
            raise NotFound(f"no image {reference}")
        self.images_[new_reference] = self.images_[reference]

    def import_rootfs(self, tarball: Path, reference: str, changes: list[str]) -> None:
        labels = dict(c.removeprefix("LABEL ").split("=", 1) for c in changes if c.startswith("LABEL "))
        self.images_[reference] = ImageInfo(id=f"{len(self.images_) + 1:064x}", tags=(reference,), labels=labels)

    def save_image(self, reference: str, archive: Path) -> None:
        Path(archive).write_text(reference)

    def load_image(self, archive: Path) -> None:
        self.images_.setdefault(Path(archive).read_text(), ImageInfo(id="loaded"))

    # networks
    def ensure_network(self, name: str, interface: str, labels: Mapping[str, str]) -> NetworkInfo:
        return self.networks_.setdefault(name, NetworkInfo(name, interface, dict(labels)))

    def networks(self, label: str) -> list[NetworkInfo]:
        key, _, value = label.partition("=")
        return [n for n in self.networks_.values() if key in n.labels and (not value or n.labels[key] == value)]

    def remove_network(self, name: str) -> None:
        self.networks_.pop(name, None)

    def close(self) -> None:
        for name in list(self.servers):
            self._stop_server(name)
