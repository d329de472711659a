"""RUN --mount options in builds: each Space gets its own caches, and a Dockerfile's mounts are
checked before Podman sees them.

Buildah keeps a cache mount in a host folder named by its `id` (or, without one, by its
target) under one folder shared by every build of the service. Without these rules one
Space's RUN step could plant packages in a cache another Space's build installs from, and
an `id` such as `../../../etc` mounts any host folder into the step (Buildah joins it to the
cache folder as given).
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import re

from spacehooks import trust
from spacehooks.errors import SpaceError

# Options a Dockerfile may give a cache mount; spacehooks adds the `id` itself.
CACHE_OPTIONS = {"type", "target", "dst", "destination", "sharing", "mode", "uid", "gid",
                 "ro", "readonly", "rw", "readwrite"}
# Characters allowed in a --mount value: no variables, quotes or escapes, so what is checked here
# is what Buildah reads.
PLAIN = re.compile(r"^[A-Za-z0-9_=,./:@+-]*$")
DIRECTIVE = re.compile(r"^#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$")


def space_key(space_id: str) -> str:
    return hashlib.sha256(space_id.encode()).hexdigest()[:16]


def cache_id(space_id: str, target: str) -> str:
    """The cache folder's name: the Space's own, one per target (hashed: a target may hold '..')."""
    return f"spacehooks-{space_key(space_id)}-{hashlib.sha256(target.encode()).hexdigest()[:12]}"


def cache_mount(space_id: str, target: str) -> str:
    return f"--mount=type=cache,id={cache_id(space_id, target)},target={target}"


def _escape_char(lines: list[str]) -> str:
    """The `# escape=` parser directive, read like Buildah: only in the leading comment lines."""
    for line in lines:
        match = DIRECTIVE.match(line.strip())
        if not match:
            break
        if match.group(1).lower() == "escape":
            return match.group(2)
    return "\\"


class Refused(SpaceError):
    """A --mount spacehooks cannot vet; `line` and `reason` for the push report."""

    def __init__(self, lineno: int, text: str, why: str):
        self.line, self.reason = lineno, f"{why}: {text.strip()[:120]}"
        super().__init__(f"Dockerfile line {lineno}: {self.reason}", hint=HINT)


HINT = ("cache mounts may set target, sharing, mode, uid, gid and ro; spacehooks gives each Space "
        "its own cache (its id); bind, secret and tmpfs mounts are unchanged")


def _refuse(lineno: int, text: str, why: str) -> Refused:
    return Refused(lineno, text, why)


def _rewrite_mount(space_id: str, value: str, lineno: int, line: str) -> str:
    if not PLAIN.match(value):
        raise _refuse(lineno, line, "a --mount value may not hold variables, quotes or escapes")
    options = {}
    for part in value.split(","):
        key, _, val = part.partition("=")
        if key.lower() in options:
            raise _refuse(lineno, line, f"a --mount may give {key} only once")
        options[key.lower()] = val
    if options.get("type") != "cache":
        return value
    unknown = sorted(set(options) - CACHE_OPTIONS)
    if unknown:
        raise _refuse(lineno, line, f"a cache mount may not set {', '.join(unknown)}")
    target = options.get("target") or options.get("dst") or options.get("destination") or ""
    return f"{value},id={cache_id(space_id, target)}"


def _flags(rest: str) -> tuple[list[str], str]:
    """The leading `--flag=value` words of an instruction's arguments, and what follows."""
    flags = []
    while True:
        rest = rest.lstrip()
        match = re.match(r"--\S*", rest)
        if not match:
            return flags, rest
        flags.append(match.group(0))
        rest = rest[match.end():]


# shells whose `export` a CA prefix can rely on (SHELL may name another)
POSIX_SHELLS = {"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox"}


def confine_dockerfile(space_id: str, text: str, ca: bool = False) -> str:
    """The Dockerfile with the Space's own id on every cache mount; refuses mounts it cannot vet.
    ca: every RUN also mounts the CA secrets (trust.py) and, in shell form under a POSIX
    shell, exports the variables that point the usual tools at them.

    Works on logical lines (continuations joined) so a mount split over lines is seen whole.
    """
    lines = text.splitlines()
    shell = {"posix": True, "ca": ca}
    escape = _escape_char(lines)
    out: list[str] = []
    logical, physical, start = "", [], 0
    for number, line in enumerate(lines, 1):
        if not physical:
            start = number
            if line.lstrip().startswith("#"):
                out.append(line)
                continue
        physical.append(line)
        if line.lstrip().startswith("#"):
            continue  # Buildah drops comment lines inside a continued instruction
        stripped = line.rstrip()
        if stripped.endswith(escape):
            logical += stripped[:-len(escape)]  # joined as Buildah does: no space added
            continue
        out += _confine_instruction(space_id, logical + line, start, shell) or physical
        logical, physical = "", []
    if physical:
        out += _confine_instruction(space_id, logical, start, shell) or physical
    return "\n".join(out) + "\n"


def _posix_shell(rest: str) -> bool:
    try:
        argv = json.loads(rest)
    except ValueError:
        return False
    return bool(argv) and isinstance(argv[0], str) and posixpath.basename(argv[0]) in POSIX_SHELLS


def _confine_instruction(space_id: str, line: str, lineno: int, shell: dict) -> list[str] | None:
    """The instruction as one rewritten line, or None to keep it as written."""
    words = line.split(None, 1)
    if not words:
        return None
    keyword, rest = words[0].upper(), words[1] if len(words) > 1 else ""
    if keyword == "FROM":
        shell["posix"] = True  # each stage starts with the default shell
    if keyword == "SHELL":
        shell["posix"] = _posix_shell(rest)
    if keyword == "ONBUILD":
        if "mount" in rest.lower():
            raise _refuse(lineno, line, "ONBUILD may not use --mount")
        return None
    if keyword != "RUN":
        return None
    flags, command = _flags(rest)
    new_flags = []
    for flag in flags:
        name, _, value = flag[2:].partition("=")
        if name.lower() == "mount":
            if name != "mount" or not value:
                raise _refuse(lineno, line, "write a mount as --mount=type=...,target=...")
            flag = "--mount=" + _rewrite_mount(space_id, value, lineno, line)
        new_flags.append(flag)
    # a RUN with any other flag is refused by Buildah ("RUN only supports the --mount flag"):
    # left as written so that error quotes the author's line
    others = any(not f.lower().startswith("--mount=") for f in flags)
    if shell["ca"] and command.strip() and not others:
        new_flags.append(trust.mount_flags())
        # exec form (JSON) runs no shell: it gets the file at /run/secrets, not the variables
        if shell["posix"] and not command.lstrip().startswith("["):
            command = trust.shell_prefix() + command
    if new_flags == flags:
        return None
    return [" ".join([words[0]] + new_flags + [command])]
