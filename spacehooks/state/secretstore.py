"""Secrets: one 0600 file per key in 0700 folders of the server's account, never in the database.

Every folder and file is opened relative to its parent's descriptor with O_NOFOLLOW and
checked to be this account's, so a link or a folder planted by someone else is refused,
never followed; a value is written to a new file of a random name and renamed into place.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

SECRET_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def secrets_dir(home: Path, space_id: str) -> Path:
    return Path(home) / "secrets" / space_id


def _refuse(path: Path, why: str):
    from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
    raise SpaceError(f"{path} {why}: secrets are not read or written there",
                     hint=f"remove {path} (spacehooks makes it again, owned by uid {os.geteuid()}, mode 0700)")


def _checked(fd: int, path: Path) -> int:
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        os.close(fd)
        _refuse(path, f"belongs to uid {info.st_uid}")
    if stat.S_IMODE(info.st_mode) != 0o700:  # no setgid from the state folder either
        os.fchmod(fd, 0o700)
    return fd


def _folder(home: Path, space_id: str, create: bool) -> int | None:
    """A descriptor of the Space's secrets folder; None when it does not exist (and not create)."""
    parts = space_id.split("/")
    if any(p in ("", ".", "..") for p in parts):
        _refuse(secrets_dir(home, space_id), "is not a Space's folder")
    home = Path(home)
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        _refuse(home, f"belongs to uid {os.stat(home).st_uid}")
    path = home
    for part in ["secrets", *parts]:
        path = path / part
        if create:
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
        try:
            child = os.open(part, _DIR, dir_fd=fd)
        except FileNotFoundError:
            os.close(fd)
            return None
        except OSError:  # ELOOP or ENOTDIR: a link or a file where a folder belongs
            os.close(fd)
            _refuse(path, "is not a folder")
        os.close(fd)
        fd = _checked(child, path)
    return fd


def read_secrets(home: Path, space_id: str) -> dict:
    fd = _folder(home, space_id, create=False)
    if fd is None:
        return {}
    values = {}
    try:
        for name in sorted(os.listdir(fd)):
            if not SECRET_KEY.fullmatch(name):
                continue
            try:
                file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
            except OSError:  # a link: never followed
                continue
            with os.fdopen(file_fd, "rb") as fh:
                info = os.fstat(fh.fileno())
                if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
                    values[name] = fh.read().decode()
    finally:
        os.close(fd)
    return values


def write_secret(home: Path, space_id: str, key: str, value: str) -> None:
    fd = _folder(home, space_id, create=True)
    tmp = f".{key}.{os.urandom(8).hex()}.tmp"  # no secrets module: every push imports this one
    try:
        file_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
        try:
            with os.fdopen(file_fd, "wb") as fh:
                fh.write(value.encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, key, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=fd)
            except FileNotFoundError:
                pass
            raise
    finally:
        os.close(fd)


def delete_secret(home: Path, space_id: str, key: str) -> bool:
    fd = _folder(home, space_id, create=False)
    if fd is None:
        return False
    try:
        os.unlink(key, dir_fd=fd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)
