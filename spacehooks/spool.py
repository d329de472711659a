"""Push records: the only thing the git account hands the server.

post-receive, run by the git account, drops one small JSON file per push into
`SPACEHOOKS_HOME/incoming/` (root's, mode 1730: the group may create files there, but not
list, read, rename or remove anyone else's). The server reads each one without following
links and answers in `SPACEHOOKS_HOME/pushes/<name>.json` (root's, readable by the group),
where the push follows its build. Nothing here trusts what it reads: intake.py checks it.
"""
from __future__ import annotations

import json
import os
import re
import stat
import time
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

from spacehooks import config

INCOMING, PUSHES = "incoming", "pushes"
INCOMING_MODE, PUSHES_MODE = 0o1730, 0o2750
SUFFIX = ".push"
NAME = re.compile(r"[0-9a-f]{32}")
MAX_RECORD = 16 * 1024       # a record is a few hundred bytes; anything larger is not one
ALIVE_FILE = "server-alive"  # in pushes/: its time says whether serve or worker is taking records in
SETTINGS_FILE = "settings.json"  # in pushes/: the server's parse of the settings file (share_settings)
ALIVE_WITHIN = 15            # seconds
STALE = 3600                 # half-written or foreign files in incoming/ older than this are removed
KEEP_ANSWERS = 86400         # answers older than this are removed
KEEP_FINAL = 600             # a final answer (refused, or the build's end) is read within seconds


# name, data (dict or None), problem (str or None), uid: who wrote it (for the log). Not
# typing.NamedTuple: post-receive imports this module, and typing costs every push 2 ms.
Record = namedtuple("Record", "name data problem uid")


def server_side(home: str | os.PathLike) -> bool:
    """Whether this process is the state folder's owner (the server's account), which takes
    its pushes in itself; every other account only drops records."""
    try:
        return os.stat(home).st_uid == os.geteuid()
    except FileNotFoundError:
        return True  # the state folder does not exist yet: whoever makes it owns it


def prepare(home: Path, gid: int | None) -> None:
    """Make incoming/ and pushes/ with their modes (only the state folder's owner does)."""
    for name, mode in ((INCOMING, INCOMING_MODE), (PUSHES, PUSHES_MODE)):
        path = home / name
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
            raise SpaceError(f"{path} is not a folder of this account (uid {info.st_uid}): push records cannot be trusted",
                             hint=f"remove it; spacehooks makes it again with the right owner and mode")
        if gid is not None and info.st_gid != gid:
            os.chown(path, -1, gid)
        if stat.S_IMODE(info.st_mode) != mode:
            os.chmod(path, mode)


def drop(home: str | os.PathLike, record: dict) -> str:
    """Write a record into incoming/ in one step (the server never sees half of one); returns
    its name, under which the server answers. Raises OSError when incoming/ is not writable."""
    name = os.urandom(16).hex()  # secrets.token_hex's way, without importing hashlib
    folder = Path(home) / INCOMING
    tmp = folder / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(json.dumps(record).encode())
    os.rename(tmp, folder / (name + SUFFIX))
    return name


def incoming_stamp(home: str | os.PathLike) -> int | None:
    """Changes when a record is dropped (the folder's time: a rename into it sets it)."""
    try:
        return os.stat(Path(home) / INCOMING).st_mtime_ns
    except OSError:
        return None


def waiting(home: str | os.PathLike) -> bool:
    """Whether a record waits in incoming/ (the server's account lists it; the group cannot)."""
    try:
        return any(e.endswith(SUFFIX) and NAME.fullmatch(e.removesuffix(SUFFIX)) for e in os.listdir(Path(home) / INCOMING))
    except OSError:
        return False


def take(home: str | os.PathLike) -> Iterator[Record]:
    """Read and remove every record in incoming/, oldest first. A link, a folder, a FIFO, a file
    with other hard links or a large one is never read: it comes back with its problem."""
    try:
        fd = os.open(Path(home) / INCOMING, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        found = []
        for entry in os.listdir(fd):
            try:
                found.append((os.stat(entry, dir_fd=fd, follow_symlinks=False), entry))
            except FileNotFoundError:
                continue
        for info, entry in sorted(found, key=lambda f: (f[0].st_mtime_ns, f[1])):
            name = entry.removesuffix(SUFFIX)
            if not (entry.endswith(SUFFIX) and NAME.fullmatch(name)):
                if time.time() - info.st_mtime > STALE:
                    _unlink(entry, fd)
                continue
            yield _read(entry, name, fd, info.st_uid)
    finally:
        os.close(fd)


def _read(entry: str, name: str, dir_fd: int, uid: int) -> Record:
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dir_fd)
    except OSError as exc:
        _unlink(entry, dir_fd)
        return Record(name, None, f"cannot be opened without following a link ({exc.strerror})", uid)
    try:
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            problem = "is not a regular file"
        elif info.st_nlink != 1:
            problem = "has other hard links"
        elif info.st_size > MAX_RECORD:
            problem = f"is {info.st_size} bytes, more than the {MAX_RECORD} a record may have"
        data = None
        if problem is None:
            raw = os.read(fd, MAX_RECORD + 1)
            try:
                data = json.loads(raw)
            except ValueError:
                problem = "is not JSON"
            if data is not None and not isinstance(data, dict):
                data, problem = None, "is not a JSON object"
        return Record(name, data, problem, info.st_uid)
    finally:
        os.close(fd)
        _unlink(entry, dir_fd)


def _unlink(entry: str, dir_fd: int) -> None:
    try:
        os.unlink(entry, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


# --- the server's answers ----------------------------------------------------------------
def answer(home: str | os.PathLike, name: str, body: dict) -> None:
    """Write (or replace) the answer to record `name`, readable by the group."""
    if not NAME.fullmatch(name):
        return
    folder = Path(home) / PUSHES
    tmp = folder / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "w") as fh:
        json.dump(body, fh)
    os.replace(tmp, folder / f"{name}.json")


def read_answer(home: str | os.PathLike, name: str) -> dict | None:
    try:
        with open(Path(home) / PUSHES / f"{name}.json") as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError):
        return None


def answers(home: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """Every answer still standing; final ones older than KEEP_FINAL and any older than
    KEEP_ANSWERS are removed (the server reads them all on every turn: few stay)."""
    folder = Path(home) / PUSHES
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return
    for path in entries:
        name = path.name.removesuffix(".json")
        if not (path.name.endswith(".json") and NAME.fullmatch(name)):
            continue
        try:
            age = time.time() - path.stat().st_mtime
            body = json.loads(path.read_text())
            if age > KEEP_ANSWERS or (age > KEEP_FINAL and body.get("state") != "queued"):
                path.unlink()
                continue
        except (FileNotFoundError, ValueError, AttributeError):
            continue
        yield name, body


def beat(home: str | os.PathLike) -> None:
    """Say that a server is taking records in (post-receive reads the file's time)."""
    path = Path(home) / PUSHES / ALIVE_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o640)
    os.close(fd)
    os.utime(path)


def server_alive(home: str | os.PathLike) -> bool:
    try:
        return os.stat(Path(home) / PUSHES / ALIVE_FILE).st_mtime > time.time() - ALIVE_WITHIN
    except OSError:
        return False


# --- the settings, shared with post-receive ----------------------------------------------
# Importing the YAML parser would cost every push several milliseconds (its modules compile
# their regular expressions), more than post-receive's own work. So the server leaves the
# settings it parsed, with the text they came from, among its answers; post-receive takes them
# only while the settings file holds that very text, and else parses the file itself.
_shared: dict = {}  # home -> the text this process shared there


def share_settings(settings: config.Settings) -> None:
    """Leave the parsed settings in pushes/ (once per process and text; pushes/ must exist)."""
    if settings.text is None or settings.path is None or _shared.get(str(settings.home)) == settings.text:
        return
    folder = Path(settings.home) / PUSHES
    tmp = folder / f".{SETTINGS_FILE}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    values = {s.key: settings[s.key] for s in config.SETTINGS}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "w") as fh:
        json.dump({"path": str(settings.path), "text": settings.text, "values": values}, fh)
    os.replace(tmp, folder / SETTINGS_FILE)
    _shared[str(settings.home)] = settings.text


def shared_settings() -> config.Settings:
    """post-receive's settings: the server's parse when the file still holds the text it
    parsed, else config.load()'s (which imports the YAML parser)."""
    path, home = config.paths()
    try:
        text = path.read_text()
        with open(home / PUSHES / SETTINGS_FILE, encoding="utf-8") as fh:
            shared = json.load(fh)
    except (OSError, ValueError):  # no file, not shared yet, or not UTF-8: load() says what is wrong
        return config.load()
    if not isinstance(shared, dict) or (shared.get("path"), shared.get("text")) != (str(path), text) \
            or not isinstance(shared.get("values"), dict) or set(shared["values"]) != {s.key for s in config.SETTINGS}:
        return config.load()
    values = shared["values"]
    return config.Settings(values, home, path, text)
