"""Git LFS: pointer files, where the git server keeps the objects, and the gate's check.

A blob smaller than 1024 bytes that starts with the spec's version line is a pointer, and is
parsed strictly (git-lfs spec v1: `version`, `oid sha256:<64 lowercase hex>`, `size <bytes>`,
in that order, one per line, nothing else): a pointer that breaks the spec is refused at push,
never built as its text. An oid is only ever 64 lowercase hex digits, so it cannot name a path.

The store is the git server's own, one folder per layout (settings `lfs.plain_path`,
`lfs.gitea_path`, `lfs.gitlab_path`; `{repo}` stands for the bare repository's folder):
- plain, git-lfs's own layout in a bare repository: `<repo>/lfs/objects/aa/bb/<oid>`;
- gitea (Gitea/Forgejo `[lfs] PATH`) and gitlab (`shared/lfs-objects`): `<path>/aa/bb/<oid[4:]>`,
where aa and bb are the oid's first two pairs of digits. Whatever stores objects for spacehooks
(git-lfs pushing to a `file://` URL, the git server, an LFS endpoint of spacehooks' own) puts each
at `Store.object_path(oid)`, as the repository's owner: written under a temporary name in the
same file system, renamed to that path only once its size and sha256 are checked, so that a
build never meets a partial object (it checks both again as it copies).

Objects are read through `lfsread`: opened as the repository's owner (the git account), and
checked (size, sha256) as their contents are copied into a build.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from spacehooks.push import lfsread
from spacehooks.push.spaceconfig import Problem

PREFIX = b"version https://git-lfs.github.com/spec/"
VERSION = PREFIX + b"v1\n"
MAX_POINTER = 1024  # the spec: pointer files are smaller than this
OID = re.compile(r"[0-9a-f]{64}")
_OID_LINE = re.compile(rb"oid sha256:[0-9a-f]{64}")
_SIZE_LINE = re.compile(rb"size (0|[1-9][0-9]{0,17})")
_POINTER = re.compile(rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\n"
                      rb"size (0|[1-9][0-9]{0,17})\n")
LAYOUTS = ("plain", "gitea", "gitlab")
BATCH = 256  # objects opened at a time: each is an open file in the server until it is copied
MISSING = lfsread.MISSING


class Pointer(NamedTuple):
    oid: str
    size: int


def parse(data: bytes) -> Pointer:
    """The pointer data holds; ValueError saying which rule of the spec it breaks."""
    match = _POINTER.fullmatch(data)
    if match:
        return Pointer(match[1].decode(), int(match[2]))
    lines = data.split(b"\n")
    if not data.startswith(VERSION):
        raise ValueError("is a Git LFS pointer of a version this server does not read "
                         "(only https://git-lfs.github.com/spec/v1)")
    if not lines[1].startswith(b"oid "):
        raise ValueError('is a Git LFS pointer without the "oid" line after its version line')
    if not _OID_LINE.fullmatch(lines[1]):
        raise ValueError("is a Git LFS pointer whose oid is not sha256: and 64 lowercase hex digits")
    if len(lines) < 3 or not _SIZE_LINE.fullmatch(lines[2]):
        raise ValueError('is a Git LFS pointer without a "size" line (a number of bytes) after its oid')
    raise ValueError('is not a Git LFS pointer as the spec writes it: the "version", "oid" and "size" '
                     "lines, each ending in a newline, and nothing else (extensions are not read here)")


def detect_layout(repo: Path) -> str:
    """The git server a repository belongs to, by the folders that server makes in it."""
    if (repo / "hooks" / "pre-receive.d").is_dir():
        return "gitea"
    if (repo / "custom_hooks").is_dir() or "@hashed" in repo.parts:
        return "gitlab"
    return "plain"


class Store:
    """One repository's LFS objects, where its git server keeps them."""

    PREFIX, MAX_POINTER = PREFIX, MAX_POINTER  # what gitrepo's export asks for

    def __init__(self, settings, repo: str | os.PathLike):
        """settings None: the declared defaults."""
        self.repo = Path(repo)
        get = settings.__getitem__ if settings is not None else _default
        chosen = get("lfs.layout")
        self.layout = detect_layout(self.repo) if chosen == "auto" else chosen
        self.root = Path(get(f"lfs.{self.layout}_path").replace("{repo}", str(self.repo)))
        self.taken: dict[str, Pointer] = {}  # path -> pointer, each file whose contents an export replaced
        self._planned: list[tuple[tuple, Pointer]] = []  # pointers an export meets, in its order
        self._open: dict[str, int | str] = {}  # oid -> open file, or why there is none
        self._index: dict[tuple, int] = {}  # path parts -> place in _planned

    def relative(self, oid: str) -> tuple[str, str, str]:
        if not OID.fullmatch(oid):
            raise ValueError(f"{oid!r} is not an LFS oid (64 lowercase hex digits)")
        return oid[:2], oid[2:4], oid if self.layout == "plain" else oid[4:]

    def object_path(self, oid: str) -> Path:
        return self.root.joinpath(*self.relative(oid))

    def open(self, oids: Iterable[str]) -> dict[str, int | str]:
        """An open file for each object, or why there is none (read as the repository's owner)."""
        wanted = list(dict.fromkeys(oids))
        paths = ["/".join(self.relative(oid)) for oid in wanted]
        return dict(zip(wanted, lfsread.open_objects(self.repo, str(self.root), paths)))

    def check(self, pointers: dict[str, Pointer]) -> list[tuple[str, str]]:
        """(path, problem) of each pointer whose object the store lacks or holds at another size."""
        problems = []
        items = sorted(pointers.items())
        for start in range(0, len(items), BATCH):
            batch = items[start:start + BATCH]
            found = self.open(p.oid for _, p in batch)
            try:
                for path, pointer in batch:
                    problem = lfsread.size_problem(found[pointer.oid], *pointer)
                    if problem:
                        problems.append((path, problem))
            finally:
                lfsread.close(found.values())
        return problems

    # --- an export's side: gitrepo.Repo.export asks for the contents of each pointer it meets

    def plan(self, candidates: Iterable[tuple[tuple, bytes]]) -> None:
        """Take the pointers an export will meet ((path parts, blob) in its order)."""
        from spacehooks.errors import SpaceError  # here and below, not at the top: the push path skips it
        for parts, data in candidates:
            try:
                self._planned.append((parts, parse(data)))
            except ValueError as exc:
                raise SpaceError(f"{_shown(parts)}: {exc}") from None
        self._index = {parts: i for i, (parts, _) in enumerate(self._planned)}

    def contents(self, parts: tuple) -> tuple[int, Iterator[bytes]] | None:
        """(size, chunks) of the real contents when parts is a pointer; None when it is not.
        The chunks check the sha256 once read whole (SpaceError when it differs)."""
        i = self._index.get(parts)
        if i is None:
            return None
        from spacehooks.errors import SpaceError
        pointer = self._planned[i][1]
        found = self._open.pop(pointer.oid, None)  # taken: a second path with this oid opens it again
        if found is None:
            self._open.update(self.open(p.oid for _, p in self._planned[i:i + BATCH] if p.oid not in self._open))
            found = self._open.pop(pointer.oid)
        path = _shown(parts)
        problem = lfsread.size_problem(found, *pointer)
        if problem:
            lfsread.close([found])
            raise SpaceError(f"{path}: {problem}", hint=lfsread.HINT)
        self.taken[path] = pointer
        return pointer.size, lfsread.copy(found, *pointer, path)

    def close(self) -> None:
        lfsread.close(self._open.values())
        self._open = {}


def _default(key: str):
    from spacehooks.config import SETTINGS
    return next(s.default for s in SETTINGS if s.key == key)


def _shown(parts: tuple) -> str:
    return "/".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else p for p in parts)


def check_push(settings, repo, new: str, old: str | None, report) -> None:
    """The gate's check: each pointer the pushed commit brings is well formed and has its
    object, at its size, in the store (objects arrive before the pack). Pointers in trees
    the previous tip had passed this check then."""
    pointers: dict[str, Pointer] = {}
    problems = []
    for parts, data in repo.small_blobs(new, PREFIX, MAX_POINTER, base=old):
        try:
            pointers[_shown(parts)] = parse(data)
        except ValueError as exc:
            problems.append(Problem(_shown(parts), None, str(exc)))
    if pointers:
        store = Store(settings, repo.path)
        for path, problem in store.check(pointers):
            problems.append(Problem(path, None, f"{problem}; {lfsread.HINT}"))
    report.errors += sorted(problems, key=lambda p: p.file)
