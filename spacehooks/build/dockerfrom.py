"""The images a docker Space's Dockerfile starts from (`FROM`, `COPY --from`, `RUN
--mount=from=`): short names qualified as Docker Hub's, admin aliases to local images, and a
failed pull said in words that name the image and the setting that provides it.

A server that reaches registries pulls `python:3.10` as docker.io/library/python:3.10 (as
Docker does, whatever the service's registries.conf says about short names); a server that
does not maps names to images it has with `build.image_aliases` (`python:3.*` ->
localhost/spacehooks/python-compat:3.11, made by `spacehooks base-image build --compat 3.11`).
"""
from __future__ import annotations

import fnmatch
import re
from typing import NamedTuple

SETTING = "build.image_aliases"
HUB = "docker.io"
# FROM [--platform=...] IMAGE [AS NAME]; COPY/ADD --from=IMAGE; RUN --mount=...,from=IMAGE,...
_FROM = re.compile(r"^(?P<head>\s*FROM\s+(?:--\S+\s+)*)(?P<image>\S+)(?P<tail>(?:\s+AS\s+(?P<stage>\S+))?\s*)$",
                   re.IGNORECASE)
_COPY_FROM = re.compile(r"(?P<head>^\s*(?:COPY|ADD)\s+(?:--\S+\s+)*?--from=)(?P<image>[^\s]+)", re.IGNORECASE)
_MOUNT_FROM = re.compile(r"(?P<head>--mount=\S*?\bfrom=)(?P<image>[^,\s]+)", re.IGNORECASE)


class Use(NamedTuple):
    """One image a Dockerfile names: as written, as qualified, what the build pulls and why."""
    line: int
    written: str
    qualified: str
    image: str            # what the rewritten Dockerfile names
    alias: str | None     # the build.image_aliases pattern that chose it


def qualify(reference: str) -> str:
    """Docker's reading of a short name: `python:3.10` -> docker.io/library/python:3.10,
    `user/app` -> docker.io/user/app:latest. A name whose first part has a `.` or `:` or is
    `localhost` names its registry already."""
    name, at, digest = reference.partition("@")
    first, slash, rest = name.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        name = f"{HUB}/library/{name}" if not slash else f"{HUB}/{name}"
    elif first in ("index.docker.io", "registry-1.docker.io"):
        name = f"{HUB}/{rest}"
    if name.startswith(f"{HUB}/") and name.count("/") == 1:
        name = f"{HUB}/library/{name.split('/', 1)[1]}"
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + at + digest


def _matches(pattern: str, qualified: str) -> bool:
    """A pattern with a tag matches name and tag; without one, the name at any tag. Short
    patterns are qualified as names are (`python:3.*` is docker.io/library/python:3.*)."""
    name = qualified.partition("@")[0]
    if ":" in pattern.rsplit("/", 1)[-1]:
        return fnmatch.fnmatchcase(name, qualify(pattern))
    return fnmatch.fnmatchcase(name.rsplit(":", 1)[0], qualify(pattern).removesuffix(":latest"))


def resolve(aliases: dict, reference: str) -> tuple[str, str | None]:
    """What the build pulls for `reference` and the alias pattern that chose it (the first
    that matches, in the setting's order), or the qualified name and None."""
    qualified = qualify(reference)
    for pattern, image in aliases.items():
        if _matches(pattern, qualified):
            return image, pattern
    return qualified, None


def rewrite(aliases: dict, text: str) -> tuple[str, list[Use]]:
    """The Dockerfile with each image it names qualified or aliased, and what was named.
    Stage names and indexes, and references built from ARG variables (unknown until the
    build), stay."""
    stages: set = set()
    uses: list[Use] = []
    out = []

    def swap(match: re.Match, number: int) -> str:
        written = match.group("image")
        if written.lower() in stages or written.isdigit() or "$" in written or written == "scratch":
            return match.group(0)
        image, alias = resolve(aliases, written)
        uses.append(Use(number, written, qualify(written), image, alias))
        return match.group("head") + image
    for number, line in enumerate(text.splitlines(), 1):
        match = _FROM.match(line)
        if match:
            line = swap(match, number) + match.group("tail")
            if match.group("stage"):
                stages.add(match.group("stage").lower())
        else:
            line = _COPY_FROM.sub(lambda m: swap(m, number), line)
            line = _MOUNT_FROM.sub(lambda m: swap(m, number), line)
        out.append(line)
    return "\n".join(out) + "\n", uses


def describe(use: Use) -> str:
    """The build log's line for one image."""
    if use.alias is not None:
        return f"line {use.line}: {use.written} -> {use.image} ({SETTING} {use.alias!r})"
    if use.image == use.written:
        return f"line {use.line}: {use.written}"
    return f"line {use.line}: {use.written} -> {use.image}"


# Podman's words when the image of a FROM or COPY --from cannot be had
_PULL_FAILED = re.compile(r"initializing source|pinging container registry|manifest unknown|"
                          r"image not known|reading manifest|requested access to the resource is denied|"
                          r"repository name not known|no such host|connection refused|unable to pull|"
                          r"no stage or image found", re.I)


def explain(error: str, uses: list[Use]) -> str | None:
    """A failed build's message when it failed at getting one of the images: which image,
    what Podman said, and the setting that provides it. None for any other failure."""
    if not uses or not _PULL_FAILED.search(error):
        return None
    # Podman names a Hub image by its short name (docker://python:3.10) whatever the Dockerfile says
    use = next((u for u in uses if u.image in error or u.qualified.removeprefix(f"{HUB}/library/") in error
                or u.written in error), uses[0] if len(uses) == 1 else None)
    if use is None:
        return None
    said = error.strip().splitlines()[-1][:300]
    if use.alias is not None:
        return (f"image {use.written} (Dockerfile line {use.line}) is {SETTING} {use.alias!r} -> {use.image}, "
                f"which this server does not have ({said}); the admin builds it (`spacehooks base-image build "
                f"--compat X.Y` makes localhost/spacehooks/python-compat:X.Y) or changes {SETTING}")
    return (f"image {use.written} (Dockerfile line {use.line}) could not be pulled as {use.qualified} ({said}); "
            f"a server that reaches no registry maps it to a local image with {SETTING}, e.g. {_example(use)}")


def _example(use: Use) -> str:
    """The alias to suggest: the compat image stands in for the official python images only
    (suggested for `FROM ubuntu:22.04` it would send the admin to build the wrong thing)."""
    name = use.qualified.partition("@")[0]
    repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    if repository == f"{HUB}/library/python":
        return ("\"python:3.*\": localhost/spacehooks/python-compat:3.11 "
                "(made by `spacehooks base-image build --compat 3.11`)")
    return (f"\"{repository.removeprefix(f'{HUB}/library/')}\": an image of it loaded into the Podman service "
            f"(`podman load`); localhost/spacehooks/python-compat stands in for the official python images only")
