"""A Space's address, `<label>.<domain>`, and which Space holds it.

The label is the Hub's: the id in lower case, `/`, `_` and `.` made `-`. So ids that differ
only there (`alice/x-y` and `alice-x/y`, `a/h-1` and `a/h_1`, `A/B` and `a/b`) share one
address. The first Space keeps it: `create` and the first push of a second one are refused,
and the gateway routes the address to the oldest Space (by the store's creation time).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

SHARED = 'ids that differ only in letter case or in "/", "-", "_", "." share one address'


def host_label(space_id: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", space_id.replace("/", "-").lower())


def host(settings, space_id: str) -> str:
    return f"{host_label(space_id)}.{settings['gateway.domain']}"


def taken_by(settings, space_id: str, creating: bool = False) -> str | None:
    """The Space that holds space_id's address already, or None when space_id may have it.

    Known Spaces (in the store) hold their address from the time they were made; a repository
    under repo_root that the store does not know yet holds it once its deploy branch exists
    (or, for `create`, as soon as it exists)."""
    label = host_label(space_id)
    ages = _space_ages(settings) or {}  # unreadable store: the repositories still count
    mine = ages.get(space_id)
    rivals = []
    for other, made in ages.items():
        if other != space_id and host_label(other) == label and (mine is None or (made, other) < (mine, space_id)):
            rivals.append(((0, made, other), other))
    if mine is None:
        branch = f"refs/heads/{settings['deploy_branch']}"
        for other, path in _repos_with_label(settings, label):
            if other != space_id and other not in ages and (creating or _has_ref(path, branch)):
                rivals.append(((1, 0.0, other), other))
    return min(rivals)[1] if rivals else None


def taken_message(settings, space_id: str, holder: str) -> str:
    return f"{space_id}: its address {host(settings, space_id)} belongs to {holder}; {SHARED}: push it under another name"


def _space_ages(settings) -> dict[str, float] | None:
    if not os.access(settings.db_path, os.R_OK):
        return None  # the git account's push (the store is root's): no need to import SQLite
    from spacehooks import state
    return state.space_ages(settings)


def _repos_with_label(settings, label: str):
    """(id, path) of each bare repository below repo_root whose id has this label. Only
    folders whose name can start the label are entered, so a large root costs a few listings."""
    root = Path(settings["repo_root"])
    default = host_label(settings["default_owner"])
    stack = [(root, [])]
    while stack:
        folder, parts = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            name = entry.name.removesuffix(".git")
            here = parts + [name]
            joined = "-".join(host_label(p) for p in here)
            as_repo = joined if len(here) > 1 else f"{default}-{joined}"  # under the root: default_owner's
            if as_repo == label and _is_bare(Path(entry.path)):
                owner = "-".join(here[:-1]) if len(here) > 1 else settings["default_owner"]
                yield f"{owner}/{name}", Path(entry.path)
            elif label.startswith(joined + "-") and not _is_bare(Path(entry.path)):
                stack.append((Path(entry.path), here))


def _is_bare(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and not (path / ".git").exists()


def _has_ref(path: Path, ref: str) -> bool:
    from spacehooks.errors import SpaceError
    from spacehooks.git.repo import Repo
    try:
        return Repo(path).resolve_ref(ref) is not None
    except SpaceError:  # not a repository after all: it holds nothing
        return False
