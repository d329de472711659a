"""Containerfile generation and layered builds, in the Hub's layer order.

base -> packages.txt (apt) -> pre-requirements.txt -> requirements.txt -> SDK -> app files.
Each dependency file is copied on its own just before its step, so a push that changes only
code reuses every layer up to the app files.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from spacehooks import engine, trust
from spacehooks.build import buildfence, dockerfrom, staticbuild, staticsite
from spacehooks.engine import netfence
from spacehooks.push import buildmounts, depfiles, lfs, pyversions, sdkcompat, spaceconfig
from spacehooks.errors import SpaceError

CA_SECRET = trust.SECRET
CA_PATH = trust.SECRET_PATH
APP_DIR = "/home/user/app"


def image_name(space_id: str, build_id: int) -> str:
    return f"localhost/spacehooks/space/{space_id.lower()}:b{build_id}"


def image_repo(space_id: str) -> str:
    return f"localhost/spacehooks/space/{space_id.lower()}"


def base_image(settings, config: dict) -> str:
    return python_choice(settings, config).image


def python_choice(settings, config: dict):
    """The same choice the gate made at push (pyversions), or SpaceError when there is none."""
    wanted = str(config.get("python_version") or settings["default_python_version"])
    versions = settings["python_versions"]
    choice = pyversions.choose(versions, wanted)
    if choice is None or not (choice.exact or pyversions.policy(settings) == "nearest"):
        raise SpaceError(f"python_version {wanted} is not available on this server (available: {', '.join(pyversions.available(versions))})",
                         hint="set python_version in README.md to one of those, or ask the admin to add it to python_versions")
    return choice


def packages(data: bytes) -> list[str]:
    """Package names only: comment lines and inline comments would break apt-get."""
    names = []
    for line in data.decode(errors="replace").splitlines():
        names += line.split("#", 1)[0].split()
    return names


def _ca_mount(settings) -> str:
    return f"--mount=type=secret,id={CA_SECRET} " if trust.bundle(settings) else ""


def _pip(settings, space_id: str) -> str:
    env = []
    if trust.bundle(settings):
        env.append(f"PIP_CERT={CA_PATH}")
    if settings["build.pip_index_url"]:
        env.append(f"PIP_INDEX_URL={shlex.quote(settings['build.pip_index_url'])}")
    return (f"RUN {buildmounts.cache_mount(space_id, '/root/.cache/pip')} {_ca_mount(settings)}"
            # base images often set PIP_NO_CACHE_DIR, which disables pip's cache whatever its value
            + " ".join(["env -u PIP_NO_CACHE_DIR"] + env + ["pip install --disable-pip-version-check"]))


def _apt(settings, space_id: str, names: list[str]) -> str:
    cmd = []
    if settings["build.apt_mirror"]:
        mirror = shlex.quote(settings["build.apt_mirror"])
        cmd.append(f"sed -i -E 's#https?://deb.debian.org/debian/?#'{mirror}'#' "
                   "/etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null;")
    ca = f"-o Acquire::https::CaInfo={CA_PATH} " if trust.bundle(settings) else ""
    cmd.append(f"apt-get {ca}-o DPkg::Lock::Timeout=300 update && DEBIAN_FRONTEND=noninteractive "
               f"apt-get {ca}-o DPkg::Lock::Timeout=300 install -y "
               f"--no-install-recommends {' '.join(shlex.quote(n) for n in names)}")
    # Not sharing=locked: Podman 4.3's service never released that lock, and the second apt
    # step in the same service hung for ever. apt's own lock files guard concurrent steps.
    return (f"RUN {buildmounts.cache_mount(space_id, '/var/cache/apt')} "
            f"{buildmounts.cache_mount(space_id, '/var/lib/apt/lists')} "
            f"{_ca_mount(settings)}" + " ".join(cmd))


REQUIREMENT_DIRS = {"pre-requirements.txt": "pre", "requirements.txt": "req"}
FILE_OPTION = re.compile(r"^(?:--requirement|--constraint|-r|-c)(?:\s*=\s*|\s*)(\S+)")


def requirement_files(read: Callable[[str], bytes | None], name: str) -> dict[str, bytes]:
    """`name` and every file it names with -r/-c, recursively, by repository path.

    pip reads a nested file relative to the file that names it; the gate has checked that
    each one is inside the repository."""
    found: dict[str, bytes] = {}
    pending = [name]
    while pending:
        path = pending.pop()
        if path in found:
            continue
        data = read(path)
        if data is None:
            continue
        found[path] = data
        text, _ = depfiles.decode(data, path, pip=True)  # as pip reads it: a BOM may name UTF-16
        for line in (text or "").splitlines():
            match = FILE_OPTION.match(line.strip())
            if match:
                nested = posixpath.normpath(posixpath.join(posixpath.dirname(path), match.group(1)))
                if not nested.startswith(("../", "/")) and nested != "..":
                    pending.append(nested)
    return found


def containerfile(settings, config: dict, deps: dict[str, bytes], space_id: str) -> str:
    """deps: the dependency files the commit has (name -> content). Caches are the Space's own."""
    sdk = config["sdk"]
    app_file = config.get("app_file") or "app.py"
    lines = [f"FROM {base_image(settings, config)}", "USER root"]
    names = packages(deps.get("packages.txt", b""))
    if names:
        lines += ["COPY deps/packages.txt /tmp/spacehooks/packages.txt", _apt(settings, space_id, names)]
    for name in ("pre-requirements.txt", "requirements.txt"):
        if name in deps:
            # the file with every file it names (-r, -c), so the layer is keyed on all of them
            folder = REQUIREMENT_DIRS[name]
            lines += [f"COPY deps/{folder}/ /tmp/spacehooks/{folder}/",
                      f"{_pip(settings, space_id)} -r /tmp/spacehooks/{folder}/{name}"]
    wanted = sdkcompat.requirements(sdk, config.get("sdk_version"),
                                    config.get("python_version") or settings["default_python_version"])
    lines.append(f"{_pip(settings, space_id)} {' '.join(shlex.quote(r) for r in wanted)}")
    lines += [f"COPY --chown=1000:1000 app/ {APP_DIR}/", "USER 1000", f"WORKDIR {APP_DIR}",
              "ENV HOME=/home/user PYTHONUNBUFFERED=1"]
    if sdk == "streamlit":
        cmd = ["streamlit", "run", app_file, f"--server.port={spaceconfig.STREAMLIT_PORT}", "--server.address=0.0.0.0",
               "--server.headless=true"]
    else:
        cmd = ["python", app_file]
    lines.append("CMD " + json.dumps(cmd, ensure_ascii=False))  # README's app_file quoted as JSON
    return "\n".join(lines) + "\n"


class LogCounter:
    """Counts build steps and cache hits so the log can say which layers were reused."""

    def __init__(self, write: Callable[[str], None], redact: list[str]):
        self.write = write
        self.redact = [r for r in redact if len(r) >= 4]
        self.steps = 0
        self.cached = 0
        self.last_error = ""  # pip's (`ERROR: ...`) or apt's (`E: ...`) own words, for the Space's error
        self.step = ""  # the STEP line running, and the output lines since: a failed command's own words
        self.recent: list[str] = []

    def __call__(self, line: str) -> None:
        for value in self.redact:
            line = line.replace(value, "*****")
        if re.match(r"STEP \d+/\d+: ", line):
            self.steps += 1
            self.step, self.recent = line, []
        elif not line.startswith("--> "):
            self.recent = (self.recent + [line])[-staticbuild.SHOWN_LINES:]
        if line.startswith("--> Using cache"):
            self.cached += 1
            line += "  [cached layer]"
        if line.startswith(("ERROR: ", "E: ")):
            self.last_error = line.strip()[:300]
        self.write(line)


def check_links(root: Path) -> None:
    """Podman refuses a build context holding a relative symlink that leads out of it, with a
    bare HTTP 500: name the file instead. (An absolute link is copied as the link it is and
    points into the image's own files, as with Docker.)"""
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            if not path.is_symlink():
                continue
            target = os.readlink(path)
            rel = path.relative_to(root).as_posix()
            lands = os.path.normpath(os.path.join(os.path.dirname(rel), target))
            if not os.path.isabs(target) and (lands == ".." or lands.startswith("../")):
                raise SpaceError(f"{rel}: a symlink to {target}, outside the repository; the build cannot copy it",
                                 hint="commit the file itself, or a link to a file inside the repository")


def build(settings, space_id: str, repo_path: Path, commit: str, build_id: int, config: dict, *,
          secrets: dict[str, str], no_cache: bool, write: Callable[[str], None],
          should_stop: Callable[[], bool]) -> str | None:
    """Build the commit's image; returns its name, or None for sdk static (no container)."""
    from spacehooks.git.repo import Repo
    sdk = config.get("sdk")
    if spaceconfig.is_static(config) and not config.get("app_build_command"):
        write("sdk static: no image to build; the gateway serves the commit's files")
        staticsite.materialise(settings.home, space_id, repo_path, commit, write,
                               export_user=settings["build.export_user"], settings=settings)
        return None
    tag = image_name(space_id, build_id)
    work = Path(tempfile.mkdtemp(prefix="spacehooks-build-"))
    try:
        repo = Repo(repo_path)
        build_secrets: dict[str, bytes] = {}
        images: list = []  # the images a Dockerfile names (dockerfrom), for a failed pull's message
        ca_secrets = trust.build_secrets(settings)
        if sdk == "docker":
            context = work / "app"
            repo.export(commit, context, user=settings["build.export_user"], lfs=lfs.Store(settings, repo_path))
            check_links(context)
            dockerfile = "Dockerfile"
            path = context / dockerfile
            if path.is_symlink():  # its mounts could not be checked
                raise SpaceError("Dockerfile is a symbolic link", hint="commit the Dockerfile itself")
            if path.is_file():
                text, images = dockerfrom.rewrite(settings["build.image_aliases"], path.read_text(errors="replace"))
                path.write_text(buildmounts.confine_dockerfile(space_id, text, ca=bool(ca_secrets)))
            # the Hub hands every secret to docker builds through RUN --mount=type=secret only
            build_secrets = {k: v.encode() for k, v in secrets.items()}
        elif spaceconfig.is_static(config):  # app_build_command: built with Node.js, the output served (staticbuild)
            context, dockerfile = work, "Containerfile"
            repo.export(commit, work / "app", user=settings["build.export_user"], lfs=lfs.Store(settings, repo_path))
            check_links(work / "app")
            (work / dockerfile).write_text(staticbuild.containerfile(settings, config, space_id))
        else:
            context = work
            repo.export(commit, work / "app", user=settings["build.export_user"], lfs=lfs.Store(settings, repo_path))
            check_links(work / "app")
            (work / "deps").mkdir()
            deps = {}
            data = repo.read_blob(commit, "packages.txt")
            if data is not None:
                deps["packages.txt"] = data
                (work / "deps" / "packages.txt").write_text("\n".join(packages(data)) + "\n")
            for name, folder in REQUIREMENT_DIRS.items():
                files = requirement_files(lambda path: repo.read_blob(commit, path), name)
                if name in files:
                    deps[name] = files[name]
                for path, content in files.items():
                    target = work / "deps" / folder / path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(content)
            dockerfile = "Containerfile"
            choice = python_choice(settings, config)
            if not choice.exact:
                write(f"python_version {choice.wanted} is not on this server: building on python "
                      f"{choice.version} ({choice.image}), the nearest it has")
            (work / dockerfile).write_text(containerfile(settings, config, deps, space_id))
        build_secrets.update(ca_secrets)  # after the Space's own: a Space secret cannot replace the CA
        counter = LogCounter(write, list(secrets.values()))
        write(f"Building {tag} from {commit[:12]}" + (" without cache" if no_cache else ""))
        for use in images:  # under the heading: which image each FROM line gets
            write(f"Image {dockerfrom.describe(use)}")
        network = netfence.prepare(settings, space_id)
        with buildfence.BuildCgroup(settings, space_id, build_id) as fence:
            try:
                request = engine.BuildRequest(
                    context=context, tag=tag, containerfile=dockerfile, no_cache=no_cache, secrets=build_secrets,
                    network=network, timeout=settings["build.timeout_seconds"], **fence.confinement())
                engine.get(settings).build(request, on_line=counter, should_stop=should_stop)
            except engine.BuildFailed as exc:
                hit = fence.limit_hit(str(exc))
                if hit:
                    raise engine.BuildFailed(f"{hit}: {exc}") from exc
                missing = dockerfrom.explain(str(exc), images)  # which image, and the setting for it
                if missing:
                    raise engine.BuildFailed(missing) from exc
                failed = spaceconfig.is_static(config) and staticbuild.failure(str(exc), counter.step, counter.recent,
                                                                 config["app_build_command"])
                if failed:
                    raise engine.BuildFailed(failed) from exc
                if counter.last_error:  # "exit status 1" alone does not say what pip or apt refused
                    raise engine.BuildFailed(f"{exc}: {counter.last_error}") from exc
                raise
        write(f"Layers from cache: {counter.cached} of {counter.steps} steps")
        if spaceconfig.is_static(config):
            staticbuild.deploy(settings, space_id, commit, tag, config, write, work)
            return None
        return tag
    finally:
        shutil.rmtree(work, ignore_errors=True)
