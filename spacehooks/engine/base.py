"""The engine interface: what the builder, runner, supervisor and admin commands ask of a
container engine, in plain data (engine/spec.py) and plain exceptions (below).

An engine is made per settings by engine.get(settings), which calls make(settings) of the
module named for the `engine` setting (spacehooks.engine.podman, spacehooks.engine.kubernetes);
it holds no state callers rely on between calls, so making one is cheap.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Callable, Iterator, Mapping

from spacehooks.engine.spec import (BuildRequest, BuildResult, ContainerState, ContainerStats, EngineInfo,
                                    FileMount, ImageInfo, NetworkInfo, RunSpec)
from spacehooks.errors import SpaceError


class EngineError(Exception):
    """The engine refused a call; str() says why in the engine's words."""


class NotFound(EngineError):
    """No such container, image or network (removed meanwhile, say)."""


class Unreachable(SpaceError):
    """The engine's service does not answer (a SpaceError: its text is shown as it is)."""


class ServiceLost(EngineError):
    """The service went away during a build: nothing is known about the Space's files; try again later."""


class BuildFailed(EngineError):
    """The build itself failed (the Space's files are at fault, not spacehooks)."""


class BuildStopped(EngineError):
    """A newer push superseded the build while it ran."""


class Engine(abc.ABC):
    """One container engine. Names are container names; labels are `key=value` (or `key`)."""

    name = "?"

    # -- the service -------------------------------------------------------------------
    @abc.abstractmethod
    def ping(self) -> str:
        """The service's answer; raises Unreachable."""

    def reachable(self) -> bool:
        try:
            self.ping()
            return True
        except SpaceError:
            return False

    @abc.abstractmethod
    def info(self) -> EngineInfo:
        """Version and runtime facts; raises Unreachable or SpaceError."""

    # -- builds --------------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, request: BuildRequest, on_line: Callable[[str], None] = lambda line: None,
              should_stop: Callable[[], bool] = lambda: False) -> BuildResult:
        """Build request.context, calling on_line for every log line as it comes. Raises
        BuildFailed, BuildStopped (should_stop said so), ServiceLost, or SpaceError (timeout)."""

    # -- containers ----------------------------------------------------------------------
    @abc.abstractmethod
    def run(self, spec: RunSpec) -> str:
        """Create and start a container; returns its name. One that was created but would not
        start is removed again before the error is raised."""

    @abc.abstractmethod
    def start(self, name: str) -> None:
        """Start an existing (stopped) container again as it was created; raises NotFound, SpaceError."""

    @abc.abstractmethod
    def stop(self, name: str, timeout: float = 10) -> None:
        """Stop a container; raises NotFound."""

    @abc.abstractmethod
    def remove(self, name: str, stop_timeout: float = 10) -> None:
        """Stop (then kill) and remove a container; one that is gone already is fine."""

    @abc.abstractmethod
    def state(self, name: str) -> ContainerState | None:
        """The container's state with exit code and memory kill; None when there is none."""

    @abc.abstractmethod
    def states(self, label: str) -> dict[str, ContainerState]:
        """Every container carrying label, running or not, by name (cheap: labels and ports may
        be left out; only stopped ones need their exit code and memory kill)."""

    @abc.abstractmethod
    def containers(self, label: str) -> list[ContainerState]:
        """Every container carrying label, in full (labels, host port, image)."""

    @abc.abstractmethod
    def stats(self) -> dict[str, ContainerStats]:
        """Resource use of every running container, by name."""

    @abc.abstractmethod
    def log_tail(self, name: str, lines: int) -> str:
        """The container's last lines, stdout and stderr interleaved; '' when it is gone."""

    @abc.abstractmethod
    def follow_logs(self, name: str, since: float = 0, follow: bool = True) -> Iterator[bytes]:
        """The container's output from since on (0: all), chunk by chunk; with follow until it
        stops. Nothing when it is gone."""

    @abc.abstractmethod
    def remove_all(self, label: str, image_repo: str) -> None:
        """Remove every container with label and every image of image_repo; gone meanwhile is fine."""

    @abc.abstractmethod
    def probe(self, image: str, command: list[str], *, files: tuple[FileMount, ...] = (),
              env: Mapping[str, str] | None = None, devices: tuple[str, ...] = ()) -> tuple[bool, str]:
        """A short command in a throwaway container (with these GPU devices, CDI names):
        whether it succeeded, and its output."""

    # -- images --------------------------------------------------------------------------
    @abc.abstractmethod
    def image(self, reference: str) -> ImageInfo | None:
        """The image (labels included), or None when there is none."""

    def image_exists(self, reference: str) -> bool:
        return self.image(reference) is not None

    @abc.abstractmethod
    def images(self, repo: str) -> list[ImageInfo]:
        """Images of a repository (`localhost/spaces/alice/demo`)."""

    @abc.abstractmethod
    def remove_image(self, reference: str, force: bool = False) -> None:
        """Raises NotFound, or EngineError when it is in use (without force)."""

    def copy_out(self, image: str, path: str, dest: Path, limit: int) -> bool:
        """The folder `path` of an image as a tar written to dest (the image never runs); False
        when it has no such path; more than `limit` bytes is a SpaceError."""
        raise EngineError(f"{type(self).__name__} cannot copy files out of an image")

    @abc.abstractmethod
    def tag_image(self, reference: str, new_reference: str) -> None:
        """Another name for an image."""

    @abc.abstractmethod
    def import_rootfs(self, tarball: Path, reference: str, changes: list[str]) -> None:
        """An image from a root file system tarball; changes are Containerfile instructions (CMD, ENV, LABEL, ...)."""

    @abc.abstractmethod
    def save_image(self, reference: str, archive: Path) -> None:
        """A docker-archive of the image at archive."""

    @abc.abstractmethod
    def load_image(self, archive: Path) -> None:
        """The images of a docker-archive, into the engine's storage."""

    # -- networks (netfence) ----------------------------------------------------------------
    @abc.abstractmethod
    def ensure_network(self, name: str, interface: str, labels: Mapping[str, str]) -> NetworkInfo:
        """The bridge network name (made when missing) with its host interface called interface."""

    @abc.abstractmethod
    def networks(self, label: str) -> list[NetworkInfo]:
        """Networks carrying label."""

    @abc.abstractmethod
    def remove_network(self, name: str) -> None:
        """Remove a network with any container still on it; gone already is fine."""


ENGINES = {"podman": "spacehooks.engine.podman", "kubernetes": "spacehooks.engine.kubernetes"}


def get(settings) -> Engine:
    """The engine the `engine` setting names, made for these settings."""
    import importlib
    name = settings["engine"]
    module_name = ENGINES.get(name)
    if module_name is None:
        raise SpaceError(f"engine {name!r} is not known", hint=f"set engine to one of: {', '.join(ENGINES)}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise SpaceError(f"engine {name!r} is not installed ({module_name} is missing)",
                         hint="set engine to podman, or install a spacehooks that has it") from exc
    return module.make(settings)
