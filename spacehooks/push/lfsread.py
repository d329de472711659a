"""Git LFS objects read from a git server's store: opened as the repository's owner, copied
with their size and sha256 checked.

The server runs as root and the store belongs to the git account, who could make any entry
in it a symlink or a hard link to a file it may not read. So objects are opened by a child
forked as the repository's owner (`proc.forked`), one folder at a time without following a
link, regular files only, and the open file comes back over a socket: the server never reads
anything for the git account that it could not read itself.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Iterable, Iterator


CHUNK = 1 << 20
MISSING = "no object in the LFS store"
HINT = "push the object (git lfs push --all <remote>), or ask the administrator to restore it"


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


def size_problem(found: int | str, oid: str, size: int) -> str | None:
    """Why found (an open object, or why there is none) cannot stand for `size` bytes of oid."""
    if isinstance(found, str):
        return f"{found} (sha256:{oid[:12]}…, {size} bytes)"
    actual = os.fstat(found).st_size
    if actual != size:
        return f"the LFS store's object sha256:{oid[:12]}… is {actual} bytes, the pointer says {size}"
    return None


def copy(fd: int, oid: str, size: int, path: str) -> Iterator[bytes]:
    """The object's contents, a chunk at a time, fd closed at the end; SpaceError once read
    whole when they do not hash to oid."""
    import hashlib  # here (and socket, proc, SpaceError below), not at the top: the push path rarely needs them

    from spacehooks.errors import SpaceError
    digest = hashlib.sha256()
    left = size
    try:
        while left:
            chunk = os.read(fd, min(CHUNK, left))
            if not chunk:
                raise SpaceError(f"{path}: the LFS store's object sha256:{oid[:12]}… ended "
                                 f"{left} bytes early", hint=HINT)
            digest.update(chunk)
            left -= len(chunk)
            yield chunk
    finally:
        os.close(fd)
    if digest.hexdigest() != oid:
        raise SpaceError(f"{path}: the LFS store's object sha256:{oid[:12]}… does not match its "
                         f"pointer (its contents hash to sha256:{digest.hexdigest()[:12]}…): it was "
                         "damaged or changed in the store", hint=HINT)


def close(found: Iterable) -> None:
    for fd in found:
        if isinstance(fd, int):
            os.close(fd)


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


def open_objects(repo: Path, root: str, paths: list[str]) -> list[int | str]:
    """An open file for each object path below root (`aa/bb/<name>`), or why there is none;
    opened as the repository's owner."""
    account = owner(repo)
    if account is None:
        return [_open(root, path) for path in paths]
    return _open_as(account, root, paths)


def _open_as(account: tuple[int, int], root: str, paths: list[str]) -> list[int | str]:
    """_open of each path, by a child running as account; the open files come back over a socket."""
    import socket

    from spacehooks import proc
    from spacehooks.errors import SpaceError
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
        close(results)
        raise SpaceError(f"cannot read the LFS store {root} as uid {account[0]}: "
                         + (text.strip() or f"the reader failed (exit {code})"))
    return results
