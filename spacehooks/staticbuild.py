"""Static Spaces with `app_build_command`: the command runs in a build container with Node.js
and npm, and the folder holding `app_file` in what it built is what the gateway serves.

The build is an ordinary layered build (builder.py: the build fences, the Space's network
fence, the CA as a build secret, the log streamed to the push): the server's base image plus
Debian's nodejs and npm (one layer every Space shares: the step is the server's own text),
the commit's files, then the command as uid 1000 with npm pointed at `build.npm_registry` and
the CA. The output folder is then read out of the image (which never runs) as a tar, taken
file by file without trusting a name or a link in it, and written as the commit's deploy
folder (staticsite.write_deploy); the image is removed.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shlex
import tarfile
from pathlib import Path
from typing import Callable

from spacehooks import buildmounts, engine, pyversions, staticsite, trust
from spacehooks.errors import SpaceError

APP_DIR = "/home/user/app"
NODE_DEBS = ("nodejs", "npm")
MARK = "spacehooks-app-build-command"  # names the command's step in the log: its failure is the command's
MAX_FILES = 100_000
SHOWN_LINES = 5  # of a failed command's output, in the Space's error


def output_folder(config: dict) -> str:
    """The built folder, relative to the app folder: the one holding app_file ('' for the root)."""
    return posixpath.dirname(posixpath.normpath(str(config.get("app_file") or "index.html").lstrip("/")))


def index(config: dict) -> str:
    """What `/` serves of the built folder."""
    return posixpath.basename(str(config.get("app_file") or "index.html"))


def containerfile(settings, config: dict, space_id: str) -> str:
    choice = pyversions.choose(settings["python_versions"], settings["default_python_version"])
    if choice is None:
        raise SpaceError("no base image to build on: python_versions is empty")
    ca = bool(trust.bundle(settings))
    mounts = trust.mount_flags() + " " if ca else ""
    mirror = ""
    if settings["build.apt_mirror"]:
        mirror = (f"sed -i -E 's#https?://deb.debian.org/debian/?#'{shlex.quote(settings['build.apt_mirror'])}'#' "
                  "/etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null; ")
    apt_ca = f"-o Acquire::https::CaInfo={trust.SECRET_PATH} " if ca else ""
    env = ["npm_config_update_notifier=false", "npm_config_fund=false", "npm_config_audit=false"]
    if ca:
        env.append(f"npm_config_cafile={trust.SECRET_PATH}")
    if settings["build.npm_registry"]:
        env.append(f"npm_config_registry={shlex.quote(settings['build.npm_registry'])}")
    prefix = (trust.shell_prefix() if ca else "") + "export " + " ".join(env) + "; "
    # exec form, the command as one JSON string: a newline in the README's value cannot start
    # another Containerfile instruction
    argv = json.dumps(["sh", "-c", f": {MARK}; {prefix}{config['app_build_command']}"])
    cache = buildmounts.cache_mount(space_id, "/home/user/.npm") + ",uid=1000,gid=1000"
    return "\n".join([
        f"FROM {choice.image}", "USER root",
        f"RUN {mounts}{mirror}apt-get {apt_ca}-o DPkg::Lock::Timeout=300 update && DEBIAN_FRONTEND=noninteractive "
        f"apt-get {apt_ca}-o DPkg::Lock::Timeout=300 install -y --no-install-recommends {' '.join(NODE_DEBS)} "
        "&& rm -rf /var/lib/apt/lists/*",
        f"COPY --chown=1000:1000 app/ {APP_DIR}/", "USER 1000", f"WORKDIR {APP_DIR}", "ENV HOME=/home/user",
        f"RUN {mounts}{cache} {argv}"]) + "\n"


def failure(error: str, step: str, recent: list[str], command: str) -> str | None:
    """The Space's error when the command itself failed (its step was the one running): its
    exit status and last output lines. None when another step failed."""
    if MARK not in step:
        return None
    status = re.search(r"exit status \d+", error)
    lines = "; ".join(line.strip()[:200] for line in recent[-SHOWN_LINES:] if line.strip())
    return (f"app_build_command {command[:200]!r} failed ({status.group(0) if status else error[-200:]})"
            + (f"; its last lines: {lines}" if lines else ""))


def deploy(settings, space_id: str, commit: str, image: str, config: dict, write: Callable[[str], None],
           work: Path) -> None:
    """The built folder of `image` as the deploy folder of (space, commit); the image is removed."""
    folder = output_folder(config)
    source = posixpath.join(APP_DIR, folder) if folder else APP_DIR
    archive = work / "built.tar"
    limit = (settings["build.disk_mb"] or 20480) * 2 ** 20
    eng = engine.get(settings)
    try:
        found = eng.copy_out(image, source, archive, limit)
    finally:
        try:
            eng.remove_image(image, force=True)
        except engine.NotFound:
            pass
    if not found:
        raise SpaceError(f"app_build_command built no folder {folder} (app_file is {config.get('app_file')})",
                         hint="make the command write the folder app_file names, or point app_file into its output")
    write(f"Built folder {folder or '.'}: serving it at / ({index(config)})")

    def fill(temp: Path) -> dict[str, list]:
        files = _take(archive, temp, write)
        if index(config) not in files:
            raise SpaceError(f"app_build_command built no {config.get('app_file') or 'index.html'}",
                             hint="make the command write the file app_file names, or fix app_file")
        return files
    staticsite.write_deploy(settings.home, space_id, commit, fill, write)
    archive.unlink()


def _take(archive: Path, dest: Path, write: Callable[[str], None]) -> dict[str, list]:
    """Each regular file of the archive, below its top folder, into dest under its git blob id.
    Names with `..`, absolute names, links and special files are left out (and counted)."""
    files: dict[str, list] = {}
    skipped = 0
    with tarfile.open(archive, "r:") as tar:
        for member in tar:
            parts = member.name.split("/")[1:]  # Podman names the folder itself first
            rel = "/".join(parts)
            if member.isdir() or not rel:
                continue
            if (not member.isreg() or member.name.startswith("/") or any(p in ("", ".", "..") for p in parts)
                    or any(p.lower() == ".git" for p in parts) or "\0" in rel):
                skipped += 1
                continue
            if len(files) >= MAX_FILES:
                raise SpaceError(f"the built folder holds more than {MAX_FILES} files")
            files[rel] = [_store(tar.extractfile(member), member.size, dest), member.size, 0, 0]
    if skipped:
        write(f"Built folder: {skipped} links, special files or unsafe names not served")
    return files


def _store(source, size: int, dest: Path) -> str:
    """Copy one file into dest as its git blob id (the name every deploy folder uses)."""
    digest = hashlib.sha1(b"blob %d\0" % size)
    temp = dest / f".incoming.{os.getpid()}"
    with open(temp, "wb") as out:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
            out.write(chunk)
    oid = digest.hexdigest()
    os.chmod(temp, 0o600)
    os.replace(temp, dest / oid)
    return oid
