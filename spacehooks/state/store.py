"""The state store's file: opening it (WAL, schema, additive migrations), its permissions,
and the checks that tell a damaged store from a busy one.
"""
from __future__ import annotations

import grp
import os
import random
import stat
import sqlite3
import time
from pathlib import Path

from spacehooks.state.builds import Builds
from spacehooks.state.gpus import Gpus
from spacehooks.state.spaces import Spaces
from spacehooks.state.storage import STORAGE_SCHEMA, Storage
from spacehooks.state.users import USERS_SCHEMA, Users

SCHEMA = """
CREATE TABLE IF NOT EXISTS spaces (
    id TEXT PRIMARY KEY,
    repo_path TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT 'BUILDING',
    "commit" TEXT,
    image TEXT,
    port INTEGER,
    container TEXT,
    hardware TEXT,
    sleep_seconds INTEGER,
    last_request_at REAL,
    config TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    build_id INTEGER,
    limits TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    space_id TEXT NOT NULL,
    "commit" TEXT NOT NULL,
    pusher TEXT,
    status TEXT NOT NULL,
    no_cache INTEGER NOT NULL DEFAULT 0,
    config TEXT NOT NULL DEFAULT '{}',
    image TEXT,
    error TEXT,
    worker_pid INTEGER,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS builds_space ON builds(space_id, id);
CREATE TABLE IF NOT EXISTS variables (
    space_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (space_id, key)
);
CREATE TABLE IF NOT EXISTS workers (
    pid INTEGER PRIMARY KEY,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS retired (
    container TEXT PRIMARY KEY,
    space_id TEXT NOT NULL,
    remove_after REAL NOT NULL
);
-- gpu.py made this table on first use before it came here: as IF NOT EXISTS it stays additive
-- (no new schema version), and the previous release opens the store as before.
CREATE TABLE IF NOT EXISTS gpu_allocations (
    kind TEXT NOT NULL,
    device TEXT NOT NULL,
    space_id TEXT NOT NULL,
    shared INTEGER NOT NULL,
    allocated_at REAL NOT NULL,
    PRIMARY KEY (kind, device, space_id)
);
""" + USERS_SCHEMA + STORAGE_SCHEMA
# Schema versions (PRAGMA user_version). Version 1 is SCHEMA above as first released (its
# files say 0). Each migration is additive only (new tables, new columns with defaults), so
# the previous release's code still opens a migrated store: a rollback loses no Space.
MIGRATIONS = {
    # a build cut off by a Podman outage goes back to the queue; attempts bounds the retries
    2: ("ALTER TABLE builds ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",),
    # supervision restarts per Space, kept here so the gateway's metrics see the worker's count
    3: ("ALTER TABLE spaces ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0",),
    # private Spaces (issue 13): hidden from anyone but their owner's members; the accounts,
    # members, tokens and audit tables come through SCHEMA (IF NOT EXISTS)
    4: ("ALTER TABLE spaces ADD COLUMN private INTEGER NOT NULL DEFAULT 0",),
    # persistent /data storage (issue 15): a new table only (also in SCHEMA, IF NOT EXISTS); the
    # version says the store has it, so a release before it still opens the file and ignores it
    5: (STORAGE_SCHEMA,),
}
SCHEMA_VERSION = max(MIGRATIONS)
RECOVERY_HINT = ("stop serve and worker, move the file away (keep it) and run `spacehooks state rebuild`;"
                 " see README: Recovering the state store")


class State(Spaces, Builds, Gpus, Users, Storage):
    """One connection to the store; its methods (spaces.py, builds.py, gpus.py, users.py, storage.py) hold all its SQL."""

    def __init__(self, conn: sqlite3.Connection, home: Path):
        self.conn = conn
        self.home = home

    def close(self) -> None:
        self.conn.close()


def open(settings) -> State:  # noqa: A001 - the documented interface name
    home = Path(settings.home)
    home.mkdir(parents=True, exist_ok=True)
    _prepare_home(home, settings["home_group"])
    # Only the server's account reads or writes the store: the git account hands it push
    # records (spool.py). The file is made 0600 here, never through os.umask (process-wide:
    # a thread creating a file meanwhile, /run/sshd say, would get its mode). SQLite gives the
    # -wal/-shm files it makes the database file's mode and owner.
    _create_private(Path(settings.db_path))
    conn = sqlite3.connect(str(settings.db_path), timeout=30, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    try:
        _prepare(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if not is_damage(exc):  # locked, disk full, I/O: the file itself may be fine
            raise
        raise damaged(settings.db_path, exc) from exc
    for path in (settings.db_path, Path(f"{settings.db_path}-wal"), Path(f"{settings.db_path}-shm")):
        _make_private(path)
    return State(conn, home)


def space_ages(settings) -> dict[str, float] | None:
    """Each Space's id and creation time, read without creating or changing the store (a push
    reads it); {} when there is no store yet, None when this account cannot read it."""
    if not Path(settings.db_path).exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True, timeout=30)
        try:
            return dict(conn.execute("SELECT id, created_at FROM spaces").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def _create_private(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _make_private(path: Path) -> None:
    """A store file an older set-up left group-writable, or that the git account made (it
    wrote the store then), becomes this account's alone."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if info.st_uid != os.geteuid():
        os.lchown(path, os.geteuid(), -1)
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)


def _prepare(conn: sqlite3.Connection) -> None:
    # Two processes opening a new database at once (serve's worker and gateway threads do) can
    # both hold a read lock while one asks for the write lock the switch to WAL needs: SQLite
    # answers "database is locked" at once, without waiting. WAL is kept in the file, so this
    # only happens on a new database; try again for a while.
    deadline = time.monotonic() + 30
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(SCHEMA)  # new tables may also come this way (IF NOT EXISTS)
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                _migrate(conn)  # new columns only come this way
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05 + random.random() * 0.1)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to SCHEMA_VERSION, one transaction per step (two processes may race)."""
    for version in sorted(MIGRATIONS):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if max(conn.execute("PRAGMA user_version").fetchone()[0], 1) < version:
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def schema_version(st: State) -> int:
    return st.conn.execute("PRAGMA user_version").fetchone()[0]


def is_damage(exc: BaseException) -> bool:
    """SQLite says the file is not a sound database (not: locked, full, or an I/O error)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or (
        not name and any(m in str(exc) for m in ("malformed", "not a database")))


def damaged(path, exc: BaseException):
    from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
    return SpaceError(f"the state store {path} is damaged ({exc})", hint=RECOVERY_HINT)


def integrity_problems(settings) -> list[str]:
    """What SQLite's quick_check finds wrong with the store (reads all of it: run at start, not per
    request). Raises SpaceError when the file cannot be opened as a database at all."""
    path = Path(settings.db_path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check(20)")]
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        raise damaged(path, exc) from exc
    finally:
        conn.close()
    return [] if rows == ["ok"] else rows


def verify(settings) -> None:
    """Stop at start, with the way out, when the store is damaged."""
    problems = integrity_problems(settings)
    if problems:
        raise damaged(settings.db_path, "; ".join(problems[:3]))


def _prepare_home(home: Path, group: str) -> int | None:
    """The state folder is the server's: owned by this account and writable by nobody else.

    It is group-owned by `group` and setgid, so that the logs below stay readable to the git
    account (its push streams the build log); the git account may only drop push records
    into incoming/ (spool.py). Returns the group's id when it exists."""
    from spacehooks import spool
    info = home.stat()
    if info.st_uid != os.geteuid():
        from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
        raise SpaceError(f"{home} belongs to uid {info.st_uid}, not to this account (uid {os.geteuid()}): "
                         "whoever owns it can replace the state store and the secrets",
                         hint=f"run spacehooks as the owner of {home}, or give it to root: chown root: {home}"
                              " (contrib/setup.sh does)")
    gid = None
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            pass
    if gid is not None and info.st_gid != gid:
        os.chown(home, -1, gid)
    mode = stat.S_IMODE(info.st_mode)
    wanted = (mode & ~0o022) | (0o2050 if gid is not None else 0)
    if mode != wanted:
        home.chmod(wanted)
    spool.prepare(home, gid)
    return gid
