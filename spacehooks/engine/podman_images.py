"""Images on Podman: REST for lookups, tags and removal; Podman's CLI in remote mode
(`podman --url`) for import, save and load, whose ~1 GB archives it streams (podman-py's
load reads them into memory)."""
from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

from spacehooks import proc
from spacehooks.engine import podman_rest as rest
from spacehooks.engine.base import EngineError, NotFound
from spacehooks.engine.spec import ImageInfo
from spacehooks.errors import SpaceError


def _info(attrs: dict) -> ImageInfo:
    return ImageInfo(id=attrs.get("Id") or attrs.get("ID") or "",
                     tags=tuple(t for t in attrs.get("RepoTags") or () if t != "<none>:<none>"),
                     labels=attrs.get("Labels") or {}, created=str(attrs.get("Created") or "") or None,
                     size=int(attrs.get("Size") or 0))


class Images:
    """The image half of the Podman engine (a mixin: self.url is the service)."""

    url: str

    def _cli(self, *args: str, check: bool = True, timeout: float = 1800):
        return proc.run(["podman", "--url", self.url, *args], check=check, timeout=timeout)

    def image(self, reference: str) -> ImageInfo | None:
        result = self._cli("image", "inspect", "--format", "{{json .}}", reference, check=False)
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace")
            if "image not known" in detail:
                return None
            raise SpaceError(f"Podman service at {self.url} did not answer: {detail.strip().splitlines()[-1]}",
                             hint="start it with contrib/podman/start-service.sh, or fix podman_url")
        attrs = json.loads(result.stdout.decode() or "null") or {}
        if isinstance(attrs, list):
            attrs = attrs[0] if attrs else {}
        return _info({**attrs, "Labels": attrs.get("Labels") or (attrs.get("Config") or {}).get("Labels")})

    def image_exists(self, reference: str) -> bool:
        status, _ = rest.request(self.url, "GET", f"{rest.API}/images/{urllib.parse.quote_plus(reference)}/exists")
        return status < 300

    def images(self, repo: str) -> list[ImageInfo]:
        query = urllib.parse.urlencode({"filters": json.dumps({"reference": [repo]})})
        status, body = rest.request(self.url, "GET", f"{rest.API}/images/json?{query}")
        if status == 404:
            return []
        if status >= 400:
            raise SpaceError(f"Podman images of {repo}: HTTP {status}: {body[:300].decode(errors='replace')}")
        return [_info(attrs) for attrs in json.loads(body) or ()]

    def remove_image(self, reference: str, force: bool = False) -> None:
        status, body = rest.request(self.url, "DELETE", f"{rest.API}/images/{urllib.parse.quote(reference, safe='')}"
                                                        f"?force={'true' if force else 'false'}")
        if status == 404:
            raise NotFound(f"no image {reference}")
        if status >= 400:
            raise EngineError(_message(body, status))

    def tag_image(self, reference: str, new_reference: str) -> None:
        repo, _, tag = new_reference.rpartition(":")
        if not repo or "/" in tag:
            repo, tag = new_reference, "latest"
        query = urllib.parse.urlencode({"repo": repo, "tag": tag})
        status, body = rest.request(self.url, "POST",
                                    f"{rest.API}/images/{urllib.parse.quote(reference, safe='')}/tag?{query}")
        if status == 404:
            raise NotFound(f"no image {reference}")
        if status >= 400:
            raise EngineError(_message(body, status))

    def copy_out(self, image: str, path: str, dest: Path, limit: int) -> bool:
        """The folder `path` of an image, as the tar Podman makes of it, written to dest; False when
        the image has no such path. The image never runs: a container is created, read and
        removed. More than `limit` bytes is refused."""
        status, body = rest.request(self.url, "POST", f"{rest.API}/containers/create",
                                    {"image": image, "command": ["true"], "labels": {"spacehooks.copy-out": "1"}})
        if status >= 400:
            raise EngineError(_message(body, status))
        cid = json.loads(body)["Id"]
        try:
            conn = rest.UnixConnection(rest.socket_path(self.url), 600)
            try:
                conn.request("GET", f"{rest.API}/containers/{cid}/archive?{urllib.parse.urlencode({'path': path})}")
                response = conn.getresponse()
                if response.status == 404:
                    return False
                if response.status >= 400:
                    raise EngineError(_message(response.read(), response.status))
                written = 0
                with open(dest, "wb") as fh:
                    while chunk := response.read(1 << 20):
                        written += len(chunk)
                        if written > limit:
                            raise SpaceError(f"{path} in the built image holds more than {limit // 2**20} MB",
                                             hint="build less, or raise build.disk_mb")
                        fh.write(chunk)
                return True
            finally:
                conn.close()
        finally:
            rest.request(self.url, "DELETE", f"{rest.API}/containers/{cid}?force=true")

    def import_rootfs(self, tarball: Path, reference: str, changes: list[str]) -> None:
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        self._cli(*args, "--message", "spacehooks base image", str(tarball), reference)

    def save_image(self, reference: str, archive: Path) -> None:
        self._cli("save", "--format", "docker-archive", "--output", str(archive), reference)

    def load_image(self, archive: Path) -> None:
        self._cli("load", "--input", str(archive))


def _message(body: bytes, status: int) -> str:
    try:
        return str(json.loads(body).get("message") or f"HTTP {status}")
    except (ValueError, AttributeError):
        return f"HTTP {status}: {body[:300].decode(errors='replace')}"
