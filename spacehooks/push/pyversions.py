"""Which base image serves a README's `python_version`.

The Hub accepts any 3.x or 3.x.x and builds on that Python; a server offers only the versions
its admin added (`python_versions`). A version the server lacks is served by the nearest minor
version it has (the newer of two equally near), with a warning at push, unless the admin set
`python_version_fallback: refuse`. The gate and the builder both choose here, so the warning at
push names the image the build then uses.
"""
from __future__ import annotations

from typing import NamedTuple

POLICIES = ("nearest", "refuse")


class Choice(NamedTuple):
    wanted: str    # as the README wrote it
    version: str   # the python_versions key that serves it
    image: str
    exact: bool    # same minor version (a 3.10 image serves 3.10.10 as the Hub's 3.10 would)


def _parts(version: str) -> tuple:
    # int() raises ValueError on a key that is no version: a broken config fails closed
    return tuple(int(part) for part in str(version).split("."))


def minor(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def available(versions: dict) -> list:
    return sorted(versions, key=_parts)


def choose(versions: dict, wanted: str) -> Choice | None:
    """The image for `wanted`: its own key, else its minor's, else the nearest minor; None when
    the server offers no Python at all."""
    wanted = str(wanted)
    if wanted in versions:
        return Choice(wanted, wanted, versions[wanted], True)
    want = _parts(wanted)[:2]
    best = None
    for key in available(versions):
        have = _parts(key)[:2]
        # nearest minor first, then the newer of two equally near, then the newest patch
        rank = (abs(have[0] - want[0]) * 100 + abs(have[1] - want[1]), tuple(-p for p in _parts(key)))
        if best is None or rank < best[0]:
            best = (rank, key)
    if best is None:
        return None
    key = best[1]
    return Choice(wanted, key, versions[key], _parts(key)[:2] == want)


def policy(settings) -> str:
    value = settings["python_version_fallback"]
    if value not in POLICIES:
        from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
        raise SpaceError(f"python_version_fallback must be one of {', '.join(POLICIES)} (found {value!r})",
                         hint="fix it in the server config")
    return value


def fallback_message(choice: Choice) -> str:
    return (f'"python_version" {choice.wanted} is not on this server: the Space runs on python {choice.version}, '
            f"the nearest it has; an administrator can add {minor(choice.wanted)} "
            '(spacehooks README, "Compatibility with the Hub")')


def refused_message(versions: dict, wanted: str) -> str:
    return f'"python_version" {wanted} is not available on this server; it provides [{", ".join(available(versions))}]'
