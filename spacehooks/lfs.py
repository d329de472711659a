"""Git LFS: pointer files, the git server's object store, and objects read from it.

A blob smaller than 1024 bytes that starts with the spec's version line is a pointer, and is
parsed strictly (git-lfs spec v1: `version`, `oid sha256:<64 lowercase hex>`, `size <bytes>`,
in that order, one per line, nothing else): a pointer that breaks the spec is refused at push,
never built as its text. An oid is only ever 64 lowercase hex digits, so it cannot name a path.

The store is the git server's own, one folder per layout (settings `lfs.plain_path`,
`lfs.gitea_path`, `lfs.gitlab_path`; `{repo}` stands for the bare repository's folder):
- plain, git-lfs's own layout in a bare repository: `<repo>/lfs/objects/aa/bb/<oid>`;
- gitea (Gitea/Forgejo `[lfs] PATH`) and gitlab (`shared/lfs-objects`): `<path>/aa/bb/<oid[4:]>`,
where aa and bb are the oid's first two pairs of digits. Whatever writes objects for spacehooks
(git-lfs pushing to a local path, the git server, an LFS endpoint) writes them at `object_path`,
whole, under their sha256.

Objects are opened as the account that owns the repository (the git account), never by root
following paths that account controls: the server forks a child as that account, which opens
each object without following a link and hands the open file back over a socket. Size and
sha256 are checked as the contents are copied into a build.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from spacehooks import proc
from spacehooks.errors import SpaceError
from spacehooks.spaceconfig import Problem

PREFIX = b"version https://git-lfs.github.com/spec/"
VERSION = PREFIX + b"v1\n"
MAX_POINTER = 1024  # the spec: pointer files are smaller than this
OID = re.compile(r"[0-9a-f]{64}")
_OID_LINE = re.compile(rb"oid sha256:[0-9a-f]{64}")
_SIZE_LINE = re.compile(rb"size (0|[1-9][0-9]{0,17})")
_POINTER = re.compile(rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\n"
                      rb"size (0|[1-9][0-9]{0,17})\n")
LAYOUTS = ("plain", "gitea", "gitlab")
CHUNK = 1 << 20
BATCH = 256  # objects opened at a time: each is an open file in the server until it is copied
MISSING = "no object in the LFS store"


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


def owner(repo: Path) -> tuple[int, int] | None:
    """(uid, gid) the store is read as: the repository's owner, when the server runs as root
    and root does not own it; None: read as ourselves."""
    if os.geteuid() != 0:
        return None
    info = os.stat(repo)
    if info.st_uid == 0:
        return None
    import pwd
    try:
        return info.st_uid, pwd.getpwuid(info.st_uid).pw_gid
    except KeyError:
        return info.st_uid, info.st_gid


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
        """An open file for each object, or why there is none."""
        wanted = list(dict.fromkeys(oids))
        paths = ["/".join(self.relative(oid)) for oid in wanted]
        account = owner(self.repo)
        if account is None:
            return {oid: _open(str(self.root), path) for oid, path in zip(wanted, paths)}
        return dict(zip(wanted, _open_as(account, str(self.root), paths)))

    def check(self, pointers: dict[str, Pointer]) -> list[tuple[str, str]]:
        """(path, problem) of each pointer whose object the store lacks or holds at another size."""
        problems = []
        items = sorted(pointers.items())
        for start in range(0, len(items), BATCH):
            batch = items[start:start + BATCH]
            found = self.open(p.oid for _, p in batch)
            try:
                for path, pointer in batch:
                    problem = _size_problem(found[pointer.oid], pointer)
                    if problem:
                        problems.append((path, problem))
            finally:
                _close(found.values())
        return problems

    # --- an export's side: gitrepo.Repo.export asks for the contents of each pointer it meets

    def plan(self, candidates: Iterable[tuple[tuple, bytes]]) -> None:
        """Take the pointers an export will meet ((path parts, blob) in its order)."""
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
        pointer = self._planned[i][1]
        found = self._open.pop(pointer.oid, None)  # taken: a second path with this oid opens it again
        if found is None:
            self._open.update(self.open(p.oid for _, p in self._planned[i:i + BATCH] if p.oid not in self._open))
            found = self._open.pop(pointer.oid)
        path = _shown(parts)
        problem = _size_problem(found, pointer)
        if problem:
            _close([found])
            raise SpaceError(f"{path}: {problem}", hint=_HINT)
        self.taken[path] = pointer
        return pointer.size, _copy(found, pointer, path)

    def close(self) -> None:
        _close(self._open.values())
        self._open = {}


def _default(key: str):
    from spacehooks.config import SETTINGS
    return next(s.default for s in SETTINGS if s.key == key)


_HINT = "push the object (git lfs push --all <remote>), or ask the administrator to restore it"


def _size_problem(found: int | str, pointer: Pointer) -> str | None:
    if isinstance(found, str):
        return f"{found} (sha256:{pointer.oid[:12]}…, {pointer.size} bytes)"
    size = os.fstat(found).st_size
    if size != pointer.size:
        return f"the LFS store's object sha256:{pointer.oid[:12]}… is {size} bytes, the pointer says {pointer.size}"
    return None


def _copy(fd: int, pointer: Pointer, path: str) -> Iterator[bytes]:
    import hashlib  # here and socket below, not at the top: the gate seldom needs them
    digest = hashlib.sha256()
    left = pointer.size
    try:
        while left:
            chunk = os.read(fd, min(CHUNK, left))
            if not chunk:
                raise SpaceError(f"{path}: the LFS store's object sha256:{pointer.oid[:12]}… ended "
                                 f"{left} bytes early", hint=_HINT)
            digest.update(chunk)
            left -= len(chunk)
            yield chunk
    finally:
        os.close(fd)
    if digest.hexdigest() != pointer.oid:
        raise SpaceError(f"{path}: the LFS store's object sha256:{pointer.oid[:12]}… does not match its "
                         f"pointer (its contents hash to sha256:{digest.hexdigest()[:12]}…): it was "
                         "damaged or changed in the store", hint=_HINT)


def _close(found: Iterable) -> None:
    for fd in found:
        if isinstance(fd, int):
            os.close(fd)


def _shown(parts: tuple) -> str:
    return "/".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else p for p in parts)


_PATH = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}(?:[0-9a-f]{4})?")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _open(root: str, path: str) -> int | str:
    """The object at root/path, opened without following a link below root; or why not."""
    parts = path.split("/")
    try:
        fd = os.open(root, _DIR)
    except FileNotFoundError:  # git-lfs makes a repository's store with its first object
        return MISSING
    except OSError as exc:
        return f"the LFS store {root} cannot be opened ({exc.strerror})"
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        # O_NONBLOCK: a FIFO put there must not hang the open; reads of a file ignore it
        found = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
    except FileNotFoundError:
        return MISSING
    except OSError as exc:
        return f"the LFS store's object cannot be opened ({exc.strerror})"
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(found).st_mode):
        os.close(found)
        return "the LFS store holds no regular file for this object"
    return found


def _open_as(account: tuple[int, int], root: str, paths: list[str]) -> list[int | str]:
    """_open of each path, by a child running as account; the open files come back over a socket."""
    import socket
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def opener(in_fd: int) -> tuple[int, str]:
        with os.fdopen(in_fd, "rb") as stream:
            wanted = stream.read().decode().split("\n")[:-1]
        for path in wanted:
            found = _open(root, path) if _PATH.fullmatch(path) else "not an object path"
            if isinstance(found, int):
                socket.send_fds(theirs, [b"+"], [found])
                os.close(found)
            else:
                theirs.send(b"-" + found.encode()[:4000])
        return 0, ""

    try:
        pid, in_fd, msg_fd = proc.forked(opener, user=account[0], group=account[1], keep_fds=[theirs.fileno()])
    finally:
        theirs.close()
    results: list[int | str] = []
    try:
        with ours:
            with os.fdopen(in_fd, "wb") as pipe:
                pipe.write("".join(p + "\n" for p in paths).encode())
            while len(results) < len(paths):
                message, fds, _, _ = socket.recv_fds(ours, 4096, 1)
                if not message:
                    break
                results.append(fds[0] if message == b"+" and fds else message[1:].decode(errors="replace"))
    finally:
        code, text = proc.wait_forked(pid, msg_fd)
    if code != 0 or len(results) < len(paths):
        _close(results)
        raise SpaceError(f"cannot read the LFS store {root} as uid {account[0]}: "
                         + (text.strip() or f"the reader failed (exit {code})"))
    return results


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
            problems.append(Problem(path, None, f"{problem}; {_HINT}"))
    report.errors += sorted(problems, key=lambda p: p.file)
