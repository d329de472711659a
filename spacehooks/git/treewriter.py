"""Writes a commit's files for a build: the rule for tree entry names, and the writer itself.

The writer runs as its own process under an unprivileged account (forked by the server,
see `proc.forked`), creating what the parent streams over a pipe below the folder the parent
opened for it. Everything is made relative to folder descriptors it opened itself, one name at a
time, with O_NOFOLLOW and O_EXCL (mkdir fails on an existing name too): a name that exists
already, a symlink where a folder is expected, or a name such as `..`, `.git` or one holding
`/` fails the export instead of reaching outside the destination, whatever tree produced it.

Record: header `!BIHQ` (kind, mode, number of path parts, data size), each part as `!H`
length + bytes, then the data (file content or link target). Kinds: DIR, FILE, LINK.
"""
from __future__ import annotations

import errno
import os
import struct

DIR, FILE, LINK = 0, 1, 2
HEADER = struct.Struct("!BIHQ")
PART = struct.Struct("!H")
CHUNK = 1 << 20
_SPECIAL = frozenset((b"", b".", b".."))


def name_problem(name: bytes) -> str | None:
    """Why a tree entry may not have this name; None when it may."""
    if not (name in _SPECIAL or b"/" in name or b"\0" in name or (len(name) == 4 and name.lower() == b".git")):
        return None  # every name of an honest tree: the gate asks for each entry
    if name == b"":
        return "a tree entry has an empty name"
    if name in (b".", b".."):
        return f'a tree entry may not be named "{name.decode()}"'
    if name.lower() == b".git":
        return 'a tree entry may not be named ".git" (in any letter case)'
    if b"/" in name:
        return 'a tree entry name may not contain "/"'
    if b"\0" in name:
        return "a tree entry name may not contain a NUL byte"
    return None


def shown(parts) -> str:
    """A path for messages; a part that would read ambiguously is quoted with escapes.

    No codec lookups here: the writer runs this as an account that may not be able to
    import anything the server had not loaded before it forked."""
    out = []
    for part in parts:
        text = part.decode("utf-8", "backslashreplace")
        if not part or "/" in text or "\\" in text or '"' in text or not text.isprintable():
            text = '"' + "".join(c if c.isprintable() and c not in '"\\' else
                                 ("\\" + c if c in '"\\' else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
                                 for c in text) + '"'
        out.append(text)
    return "/".join(out)


def record(kind: int, parts, data: bytes = b"", mode: int = 0o644) -> bytes:
    """The bytes of one record, data included (the parent sends data on its own for files)."""
    head = HEADER.pack(kind, mode, len(parts), len(data))
    return head + b"".join(PART.pack(len(p)) + p for p in parts) + data


class Refused(Exception):
    pass


class Writer:
    def __init__(self, root_fd: int):
        self.stack = [((), root_fd)]  # open folders along the current path, root first
        self.count = 0

    def folder(self, parts: tuple) -> int:
        """The fd of the folder at parts, opened one name at a time without following links."""
        while len(self.stack) > 1 and self.stack[-1][0] != parts[:len(self.stack[-1][0])]:
            os.close(self.stack.pop()[1])
        depth = len(self.stack[-1][0])
        for i in range(depth, len(parts)):
            try:
                fd = os.open(parts[i], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self.stack[-1][1])
            except OSError as exc:
                raise Refused(f"{shown(parts[:i + 1])}: not a folder this export made ({exc.strerror})") from exc
            self.stack.append((parts[:i + 1], fd))
        return self.stack[-1][1]

    def create(self, kind: int, mode: int, parts: tuple, stream, size: int) -> None:
        if not parts:
            raise Refused("a tree entry has no name")
        for part in parts:
            problem = name_problem(part)
            if problem:
                raise Refused(f"{shown(parts)}: {problem}")
        parent, name = self.folder(parts[:-1]), parts[-1]
        try:
            if kind == DIR:
                os.mkdir(name, 0o755, dir_fd=parent)
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
                try:
                    os.fchmod(fd, 0o755)  # whatever the server's umask: the build copies these modes
                finally:
                    os.close(fd)
            elif kind == LINK:
                os.symlink(_read(stream, size), name, dir_fd=parent)
                self.count += 1
            elif kind == FILE:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755 if mode & 0o111 else 0o644,
                             dir_fd=parent)
                with os.fdopen(fd, "wb") as fh:
                    os.fchmod(fd, 0o755 if mode & 0o111 else 0o644)
                    left = size
                    while left:
                        chunk = stream.read(min(left, CHUNK))
                        if not chunk:
                            raise Refused(f"{shown(parts)}: the stream ended early")
                        fh.write(chunk)
                        left -= len(chunk)
                self.count += 1
            else:
                raise Refused(f"{shown(parts)}: unknown record kind {kind}")
        except FileExistsError as exc:
            raise Refused(f"{shown(parts)}: the tree holds this name twice") from exc
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Refused(f"{shown(parts)}: not a folder this export made ({exc.strerror})") from exc
            raise Refused(f"{shown(parts)}: {exc.strerror}") from exc


def _read(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise Refused("the stream ended early")
    return data


def write(root_fd: int, stream) -> int:
    """Create every record of stream below root_fd; returns the number of files and links."""
    writer = Writer(root_fd)
    while True:
        head = stream.read(HEADER.size)
        if not head:
            return writer.count
        if len(head) != HEADER.size:
            raise Refused("the stream ended early")
        kind, mode, count, size = HEADER.unpack(head)
        parts = tuple(_read(stream, PART.unpack(_read(stream, PART.size))[0]) for _ in range(count))
        writer.create(kind, mode, parts, stream, size)


def child(root_fd: int):
    """What `proc.forked` runs: write the records read from its input fd below root_fd."""
    def run(in_fd: int) -> tuple[int, str]:
        with os.fdopen(in_fd, "rb") as stream:
            try:
                return 0, str(write(root_fd, stream))
            except Refused as exc:
                return 1, str(exc)
    return run
