"""Base images per python_version, made without a registry: a Debian rootfs from the host's
mirror (mmdebstrap) imported into Podman, with a venv holding the Hub's pre-installed packages.

Images carry a hash of their recipe: a build is skipped while the image (or its `podman save`
in the cache folder) matches. Podman's CLI runs in remote mode (`podman --url`) against the
service (engine/podman_images.py): images land in its storage, and ~1 GB archives stream
(podman-py's load reads them into memory).
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from spacehooks import engine, proc
from spacehooks.errors import SpaceError

OURS = "localhost/spacehooks/"
LABEL = "io.spacehooks.recipe"
# Bump when the customize script or the image configuration changes meaning.
SCRIPT_VERSION = 1
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"

RELEASES = {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}
# Lean but enough for typical Spaces: pip/venv, git + LFS for Hub downloads, curl, ps, and the
# X/GL libraries opencv wheels load. Heavier tools (ffmpeg, cmake) go in a Space's packages.txt.
DEBS = ["python3", "python3-venv", "python3-pip", "ca-certificates", "git", "git-lfs", "curl",
        "procps", "rsync", "libgl1", "libsm6", "libxext6"]
# Per release: glib's t64 rename, and trixie no longer ships useradd (passwd) as essential.
RELEASE_DEBS = {"bullseye": ["libglib2.0-0"], "bookworm": ["libglib2.0-0"],
                "trixie": ["libglib2.0-0t64", "passwd"]}
PIP_PACKAGES = ["pip", "huggingface_hub", "requests", "datasets"]
VENV = "/opt/venv"
IMAGE_ENV = {"PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "VIRTUAL_ENV": VENV, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
             "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1"}
CMD = '["python3"]'
WORKDIR = "/home/user/app"

# Runs as mmdebstrap's customize hook with the rootfs as $1. The venv belongs to uid 1000 so
# the app user may pip install too. The CA bundle is only present while pip runs.
CUSTOMIZE = r"""#!/bin/sh
set -eu
root=$1
chroot "$root" useradd --create-home --uid 1000 --user-group --shell /bin/bash user
mkdir -p "$root/home/user/app"
cp "$SPACEHOOKS_CA_BUNDLE" "$root/tmp/spacehooks-ca.crt"
echo "customize: python3 -m venv /opt/venv"
chroot "$root" python3 -m venv /opt/venv
echo "customize: pip install $SPACEHOOKS_PIP_PACKAGES"
chroot "$root" /usr/bin/env -i PATH=/opt/venv/bin:/usr/bin:/bin HOME=/root \
    PIP_CERT=/tmp/spacehooks-ca.crt ${SPACEHOOKS_PIP_INDEX_URL:+PIP_INDEX_URL=$SPACEHOOKS_PIP_INDEX_URL} \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off PIP_NO_CACHE_DIR=1 \
    /opt/venv/bin/pip install --upgrade $SPACEHOOKS_PIP_PACKAGES
rm -f "$root/tmp/spacehooks-ca.crt"
chroot "$root" chown -R 1000:1000 /opt/venv /home/user
"""


@dataclass(frozen=True)
class Recipe:
    python: str
    release: str
    debs: tuple
    pip_packages: tuple

    def digest(self) -> str:
        spec = {"python": self.python, "release": self.release, "debs": list(self.debs),
                "pip": list(self.pip_packages), "script": CUSTOMIZE, "version": SCRIPT_VERSION,
                "env": IMAGE_ENV, "cmd": CMD, "workdir": WORKDIR}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def recipe_for(python: str) -> Recipe:
    release = RELEASES.get(python)
    if release is None:
        known = ", ".join(RELEASES)
        raise SpaceError(f"no Debian release provides python {python}; spacehooks builds {known}",
                         hint=f"use one of {known}, or map python_versions.{python!r} to a registry image")
    return Recipe(python, release, tuple(DEBS + RELEASE_DEBS[release]), tuple(PIP_PACKAGES))


def is_ours(reference: str) -> bool:
    return reference.startswith(OURS)


def default_reference(python: str) -> str:
    return f"{OURS}python:{python}"


def image_labels(eng: engine.Engine, reference: str) -> dict | None:
    """The image's labels, or None when there is no such image."""
    image = eng.image(reference)
    return None if image is None else dict(image.labels)


def _changes(labels: dict) -> list[str]:
    changes = [f"CMD {CMD}", f"WORKDIR {WORKDIR}", "USER root"]
    changes += [f"ENV {key}={value}" for key, value in IMAGE_ENV.items()]
    return changes + [f"LABEL {key}={value}" for key, value in labels.items()]


def host_mirrors(files=(Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))) -> tuple:
    """The host's Debian and security mirror URLs (deb822 or one-line format)."""
    text = "\n".join(f.read_text() for f in files if f.exists())
    urls = re.findall(r"(?:^URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, flags=re.M)
    main = next((u for u in urls if not u.rstrip("/").endswith("-security")), DEFAULT_MIRROR)
    security = next((u for u in urls if u.rstrip("/").endswith("-security")), DEFAULT_SECURITY)
    return main, security


def _ca_bundle(settings) -> str:
    from spacehooks import trust
    bundle = trust.bundle(settings) or HOST_CA_BUNDLE
    if not Path(bundle).is_file():
        raise SpaceError(f"CA bundle {bundle} not found; pip inside the base image build needs it",
                         hint="set build.ca_bundle to the CA bundle file your server trusts")
    return bundle


def _file_name(reference: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", reference.removeprefix(OURS))


def cache_path(settings, reference: str, digest: str) -> Path:
    return Path(settings["base_image.cache_dir"]) / f"{_file_name(reference)}-{digest}.tar"


def wanted(settings, pythons: list) -> list:
    """(python, reference) pairs to build: the ones asked for, else every configured one."""
    versions = settings["python_versions"]
    if pythons:
        return [(p, versions.get(p, default_reference(p))) for p in pythons]
    return list(versions.items())


@contextlib.contextmanager
def _lock(settings, reference: str, echo: Callable[[str], None]):
    """One build per image at a time: a second waits, then finds the image up to date."""
    folder = Path(settings["base_image.cache_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{_file_name(reference)}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"-----> Waiting for another build of {reference}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def build(settings, pythons: list, force: bool, echo: Callable[[str], None]) -> list:
    """Build (or load from the cache) each base image; returns what happened to each."""
    eng = engine.get(settings)
    outcomes = []
    for python, reference in wanted(settings, pythons):
        if not is_ours(reference):
            echo(f"-----> python {python}: {reference} is a registry image; nothing to build")
            outcomes.append("registry")
            continue
        with _lock(settings, reference, echo):
            outcomes.append(build_one(settings, eng, python, reference, force, echo))
        if python not in settings["python_versions"]:
            offered = {**settings["python_versions"], python: reference}
            echo(f"       python {python} is not offered to Spaces yet; put this in the server config:\n"
                 "         python_versions:\n" + "\n".join(f"           \"{p}\": {r}" for p, r in offered.items()))
    return outcomes


def build_one(settings, eng: engine.Engine, python: str, reference: str, force: bool,
              echo: Callable[[str], None]) -> str:
    recipe = recipe_for(python)
    digest = recipe.digest()
    labels = image_labels(eng, reference)
    if not force and labels is not None and labels.get(LABEL) == digest:
        echo(f"-----> {reference} is up to date (recipe {digest})")
        return "current"
    if labels is not None and not force:
        echo(f"-----> {reference} was made from another recipe ({labels.get(LABEL, 'none')}); rebuilding")
    archive = cache_path(settings, reference, digest)
    if not force and archive.is_file():
        started = time.monotonic()
        echo(f"-----> Loading {reference} from {archive}")
        eng.load_image(archive)
        labels = image_labels(eng, reference)
        if labels is not None and labels.get(LABEL) == digest:
            echo(f"       loaded in {time.monotonic() - started:.0f}s")
            return "loaded"
        echo(f"       {archive} does not hold recipe {digest}; building instead")
    _build_image(settings, eng, recipe, reference, digest, echo)
    _save_to_cache(eng, reference, archive, echo)
    return "built"


def _build_image(settings, eng: engine.Engine, recipe: Recipe, reference: str, digest: str,
                 echo: Callable[[str], None]) -> None:
    started = time.monotonic()
    main, security = host_mirrors()
    main = settings["build.apt_mirror"] or main
    cache = Path(settings["base_image.cache_dir"])
    apt_cache = cache / "apt" / recipe.release
    apt_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spacehooks-base-", dir=cache) as tmp:
        script = Path(tmp) / "customize.sh"
        script.write_text(CUSTOMIZE)
        script.chmod(0o755)
        tarball = Path(tmp) / "rootfs.tar"
        env = proc.clean_env({"SPACEHOOKS_CA_BUNDLE": _ca_bundle(settings),
                              "SPACEHOOKS_PIP_INDEX_URL": settings["build.pip_index_url"],
                              "SPACEHOOKS_PIP_PACKAGES": " ".join(recipe.pip_packages)})
        args = ["mmdebstrap", "--mode=root", "--variant=apt", "--format=tar",
                f"--include={','.join(recipe.debs)}",
                "--skip=essential/unlink", "--skip=download/empty",
                '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
                f"--setup-hook=sync-in {apt_cache} /var/cache/apt/archives/",
                f"--customize-hook=sync-out /var/cache/apt/archives {apt_cache}",
                f"--customize-hook={script}",
                "--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb",
                recipe.release, str(tarball),
                f"deb {main} {recipe.release} main",
                f"deb {main} {recipe.release}-updates main",
                f"deb {security} {recipe.release}-security main"]
        echo(f"-----> Building {reference}: Debian {recipe.release} + {', '.join(recipe.pip_packages[1:])} (a few minutes)")
        echo(f"       mirror {main}; packages cached in {apt_cache}")
        result = proc.run(args, env=env, input=b"", check=False, timeout=3600)
        if result.returncode != 0:  # mmdebstrap's last lines name the failing step
            tail = "\n".join(result.stderr.decode(errors="replace").strip().splitlines()[-25:])
            raise SpaceError(f"mmdebstrap failed for Debian {recipe.release} (exit {result.returncode}):\n{tail}",
                             hint="check that the Debian mirror and PyPI are reachable "
                                  "(build.apt_mirror, build.pip_index_url, build.ca_bundle)")
        echo(f"       root filesystem ready in {time.monotonic() - started:.0f}s "
             f"({tarball.stat().st_size // 2**20} MB)")
        echo(f"-----> Importing into Podman as {reference}")
        eng.import_rootfs(tarball, reference, _changes({LABEL: digest, "io.spacehooks.python": recipe.python,
                                                        "io.spacehooks.debian": recipe.release}))
    echo(f"       built in {time.monotonic() - started:.0f}s")


def _save_to_cache(eng: engine.Engine, reference: str, archive: Path, echo: Callable[[str], None]) -> None:
    started = time.monotonic()
    archive.parent.mkdir(parents=True, exist_ok=True)
    for old in archive.parent.glob(glob.escape(archive.name.rsplit("-", 1)[0]) + "-" + "[0-9a-f]" * 16 + ".tar"):
        old.unlink()  # older recipes of this image only
    partial = archive.with_name(f".{archive.name}.{os.getpid()}.partial")
    eng.save_image(reference, partial)
    os.replace(partial, archive)
    echo(f"-----> Saved to {archive} in {time.monotonic() - started:.0f}s (next time: loaded, not built)")


def listing(settings) -> list:
    """One row per configured python version: version, image, state."""
    eng = engine.get(settings)
    rows = []
    for python, reference in settings["python_versions"].items():
        if not is_ours(reference):
            state = "registry image" + ("" if image_labels(eng, reference) is not None else " (not pulled)")
        elif python not in RELEASES:
            state = "unknown python (not buildable)"
        else:
            digest = recipe_for(python).digest()
            labels = image_labels(eng, reference)
            if labels is None:
                cached = cache_path(settings, reference, digest).is_file()
                state = "missing (cached: `base-image build` loads it)" if cached else "missing"
            elif labels.get(LABEL) == digest:
                state = "up to date"
            else:
                state = "outdated (run `base-image build`)"
        rows.append((python, reference, state))
    return rows
