"""Images for a cluster: built by the Podman service as always, then pushed by it to the
registry the cluster pulls from (`kubernetes.registry`), through Podman's REST API. The
Kubernetes engine's image calls and probes are the Podman engine's (PodmanImages).
"""
from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Callable, Mapping

from spacehooks.engine import kubemanifests as km, podman_rest as rest
from spacehooks.engine.base import Engine
from spacehooks.engine.spec import BuildRequest, BuildResult, FileMount, ImageInfo, NetworkInfo
from spacehooks.errors import SpaceError

PUSH_TIMEOUT = 1800.0  # a first push of a large image crosses the network whole


def push(url: str, image: str, destination: str, *, tls_verify: bool = True,
         on_line: Callable[[str], None] = lambda line: None) -> None:
    """Push the Podman service's `image` as `destination`; SpaceError with the registry's words."""
    params = urllib.parse.urlencode({"destination": destination, "tlsVerify": str(tls_verify).lower(),
                                     "quiet": "false"})
    try:
        conn = rest.UnixConnection(rest.socket_path(url), PUSH_TIMEOUT)
        conn.request("POST", f"{rest.API}/images/{rest.quote(image)}/push?{params}")
        response = conn.getresponse()
        if response.status >= 400:
            raise _failed(destination, _message(response.read()))
        for item in rest.json_stream(response):
            if item.get("error"):
                raise _failed(destination, str(item["error"]).strip())
            if item.get("stream"):
                on_line(str(item["stream"]).rstrip("\n"))
    except (OSError, http.client.HTTPException) as exc:
        raise rest.unreachable(url, exc) from exc


def _failed(destination: str, message: str) -> SpaceError:
    return SpaceError(f"pushing the image to {destination} failed: {message}",
                      hint="check `kubernetes.registry` (and `kubernetes.registry_tls_verify` for a registry "
                           "without TLS) and that the Podman service's host can reach and log in to it")


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message"))
    except (ValueError, AttributeError):
        return body[:300].decode(errors="replace")


class PodmanImages:
    """The Kubernetes engine's builds, images, probes and networks: the Podman service's, plus
    the push. Networks are the build fence's (RUN steps still run on the Podman service); a
    running Space is fenced by its NetworkPolicy instead."""
    settings = None
    _images: Engine | None = None

    @property
    def images_engine(self) -> Engine:
        if self._images is None:
            from spacehooks.engine import podman
            self._images = podman.make(self.settings)
        return self._images

    def registry_ref(self, image: str) -> str:
        return km.image_ref(self.settings["kubernetes.registry"], image)

    def build(self, request: BuildRequest, on_line: Callable[[str], None] = lambda line: None,
              should_stop: Callable[[], bool] = lambda: False) -> BuildResult:
        result = self.images_engine.build(request, on_line, should_stop)
        self.push(request.tag, on_line)
        return result

    def push(self, image: str, on_line: Callable[[str], None] = lambda line: None) -> str:
        destination = self.registry_ref(image)
        on_line(f"Pushing {destination}")
        push(self.settings["podman_url"], image, destination,
                      tls_verify=self.settings["kubernetes.registry_tls_verify"], on_line=on_line)
        return destination

    def image(self, reference: str) -> ImageInfo | None:
        return self.images_engine.image(reference)

    def images(self, repo: str) -> list[ImageInfo]:
        return self.images_engine.images(repo)

    def remove_image(self, reference: str, force: bool = False) -> None:
        self.images_engine.remove_image(reference, force)

    def tag_image(self, reference: str, new_reference: str) -> None:
        self.images_engine.tag_image(reference, new_reference)

    def import_rootfs(self, tarball, reference: str, changes: list[str]) -> None:
        self.images_engine.import_rootfs(tarball, reference, changes)

    def save_image(self, reference: str, archive) -> None:
        self.images_engine.save_image(reference, archive)

    def load_image(self, archive) -> None:
        self.images_engine.load_image(archive)

    def probe(self, image: str, command: list[str], *, files: tuple[FileMount, ...] = (),
              env: Mapping[str, str] | None = None) -> tuple[bool, str]:
        return self.images_engine.probe(image, command, files=files, env=env)

    def ensure_network(self, name: str, interface: str, labels: Mapping[str, str]) -> NetworkInfo:
        return self.images_engine.ensure_network(name, interface, labels)

    def networks(self, label: str) -> list[NetworkInfo]:
        return self.images_engine.networks(label)

    def remove_network(self, name: str) -> None:
        self.images_engine.remove_network(name)
