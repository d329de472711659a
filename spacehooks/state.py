"""SQLite state under SPACEHOOKS_HOME: spaces, builds, variables, containers waiting for removal.

Several processes share the file (post-receive as the git user, the worker, the gateway,
admin commands): WAL mode and a busy timeout let them take turns; each process opens
its own connection.
"""
from __future__ import annotations

import grp
import json
import os
import random
import re
import stat
import sqlite3
import time
from pathlib import Path

STAGES = ("NO_APP_FILE", "CONFIG_ERROR", "BUILDING", "BUILD_ERROR", "APP_STARTING", "RUNNING",
          "RUNNING_BUILDING", "RUNNING_APP_STARTING", "RUNTIME_ERROR", "PAUSED", "STOPPED",
          "SLEEPING", "DELETING")
# A container answers on the Space's port in these stages.
ANSWERING = ("RUNNING", "RUNNING_BUILDING", "RUNNING_APP_STARTING")
# A container has been started in these (in APP_STARTING it may not answer yet).
STARTED = (*ANSWERING, "APP_STARTING")
# Build statuses; the last four are final.
QUEUED, RUNNING, SUCCEEDED, FAILED, SUPERSEDED, CANCELLED = (
    "queued", "running", "succeeded", "failed", "superseded", "cancelled")
FINAL = (SUCCEEDED, FAILED, SUPERSEDED, CANCELLED)

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
"""
_JSON_FIELDS = ("config", "limits")


class State:
    def __init__(self, conn: sqlite3.Connection, home: Path):
        self.conn = conn
        self.home = home

    # --- spaces ---------------------------------------------------------------------------
    def get_space(self, space_id: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM spaces WHERE id = ?", (space_id,)).fetchone()
        return _space(row) if row else None

    def list_spaces(self) -> list[dict]:
        return [_space(r) for r in self.conn.execute("SELECT * FROM spaces ORDER BY id")]

    def ensure_space(self, space_id: str, repo_path: str | Path, **defaults) -> dict:
        now = time.time()
        with self.conn:
            self.conn.execute(
                "INSERT OR IGNORE INTO spaces (id, repo_path, hardware, sleep_seconds, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (space_id, str(repo_path), defaults.get("hardware"), defaults.get("sleep_seconds"), now, now))
            self.conn.execute("UPDATE spaces SET repo_path = ? WHERE id = ?", (str(repo_path), space_id))
        return self.get_space(space_id)

    def update_space(self, space_id: str, **fields) -> None:
        if not fields:
            return
        fields["updated_at"] = time.time()
        for key in _JSON_FIELDS:
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key])
        columns = ", ".join(f'"{k}" = ?' for k in fields)
        with self.conn:
            self.conn.execute(f"UPDATE spaces SET {columns} WHERE id = ?", (*fields.values(), space_id))

    def touch(self, space_id: str) -> None:
        with self.conn:
            self.conn.execute("UPDATE spaces SET last_request_at = ? WHERE id = ?", (time.time(), space_id))

    def delete_space(self, space_id: str) -> None:
        with self.conn:
            for table in ("variables", "retired"):
                self.conn.execute(f"DELETE FROM {table} WHERE space_id = ?", (space_id,))
            self.conn.execute("DELETE FROM builds WHERE space_id = ?", (space_id,))
            self.conn.execute("DELETE FROM spaces WHERE id = ?", (space_id,))

    # --- builds ---------------------------------------------------------------------------
    def get_build(self, build_id: int) -> dict | None:
        row = self.conn.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
        return _build(row) if row else None

    def builds(self, space_id: str, limit: int = 50) -> list[dict]:
        rows = self.conn.execute("SELECT * FROM builds WHERE space_id = ? ORDER BY id DESC LIMIT ?",
                                 (space_id, limit))
        return [_build(r) for r in rows]

    def update_build(self, build_id: int, **fields) -> None:
        if "config" in fields and not isinstance(fields["config"], str):
            fields["config"] = json.dumps(fields["config"])
        columns = ", ".join(f'"{k}" = ?' for k in fields)
        with self.conn:
            self.conn.execute(f"UPDATE builds SET {columns} WHERE id = ?", (*fields.values(), build_id))

    def build_log_path(self, space_id: str, build_id: int) -> Path:
        return self.home / "logs" / "builds" / space_id / f"{build_id}.log"

    def run_log_path(self, space_id: str) -> Path:
        return self.home / "logs" / "run" / f"{space_id}.log"

    # --- variables ------------------------------------------------------------------------
    def variables(self, space_id: str) -> dict:
        rows = self.conn.execute("SELECT key, value FROM variables WHERE space_id = ? ORDER BY key", (space_id,))
        return {k: v for k, v in rows}

    def set_variable(self, space_id: str, key: str, value: str) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO variables VALUES (?, ?, ?)", (space_id, key, value))

    def delete_variable(self, space_id: str, key: str) -> bool:
        with self.conn:
            return self.conn.execute("DELETE FROM variables WHERE space_id = ? AND key = ?",
                                     (space_id, key)).rowcount > 0

    # --- containers replaced by a newer one, removed after a grace period -------------------
    def retire(self, space_id: str, container: str, remove_after: float) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO retired VALUES (?, ?, ?)", (container, space_id, remove_after))

    def due_retired(self, now: float | None = None) -> list[str]:
        rows = self.conn.execute("SELECT container FROM retired WHERE remove_after <= ?", (now or time.time(),))
        return [r[0] for r in rows]

    def forget_retired(self, container: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM retired WHERE container = ?", (container,))

    # --- worker heartbeats: a push only waits for its build when a worker is alive ---------
    def heartbeat(self) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO workers VALUES (?, ?)", (os.getpid(), time.time()))

    def worker_alive(self, within: float = 15) -> bool:
        row = self.conn.execute("SELECT MAX(seen_at) FROM workers").fetchone()
        return bool(row and row[0] and row[0] > time.time() - within)

    def close(self) -> None:
        self.conn.close()


def _space(row: sqlite3.Row) -> dict:
    out = dict(row)
    for key in _JSON_FIELDS:
        out[key] = json.loads(out[key] or "{}")
    return out


def _build(row: sqlite3.Row) -> dict:
    out = dict(row)
    out["config"] = json.loads(out["config"] or "{}")
    out["no_cache"] = bool(out["no_cache"])
    return out


def open(settings) -> State:  # noqa: A001 - the documented interface name
    home = Path(settings.home)
    home.mkdir(parents=True, exist_ok=True)
    gid = _share_home(home, settings["home_group"])
    # post-receive (the git account) and the server (root) both write the database. The file
    # is made 0660 here, never through os.umask (process-wide: a thread creating a file
    # meanwhile, /run/sshd say, would get group write). SQLite gives the -wal/-shm files it
    # makes the database file's mode, so they follow.
    _create_shared(Path(settings.db_path))
    conn = sqlite3.connect(str(settings.db_path), timeout=30, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    _prepare(conn)
    for path in (settings.db_path, Path(f"{settings.db_path}-wal"), Path(f"{settings.db_path}-shm")):
        try:
            info = path.stat()
            if info.st_uid == os.geteuid():
                if stat.S_IMODE(info.st_mode) != 0o660:
                    path.chmod(0o660)
                if gid is not None and info.st_gid != gid:
                    os.chown(path, -1, gid)
        except OSError:
            pass
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


def _create_shared(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o660)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o660)
    finally:
        os.close(fd)


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
            conn.executescript(SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05 + random.random() * 0.1)


def _share_home(home: Path, group: str) -> int | None:
    """Make home group-owned by `group`, group-writable and setgid (only root may do it).

    Returns the group's id when it exists. Log folders made below inherit the group and
    stay readable to it; secrets/ and run/ are 0700 and stay root-only."""
    if not group:
        return None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return None
    try:
        info = home.stat()
        if info.st_uid != os.geteuid():
            return gid
        if info.st_gid != gid:
            os.chown(home, -1, gid)
        if stat.S_IMODE(info.st_mode) & 0o2070 != 0o2070:
            home.chmod(stat.S_IMODE(info.st_mode) | 0o2070)
    except OSError:
        pass
    return gid


# --- secrets: one 0600 file per key in a 0700 folder, never in the database ----------------
SECRET_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def secrets_dir(home: Path, space_id: str) -> Path:
    return Path(home) / "secrets" / space_id


def read_secrets(home: Path, space_id: str) -> dict:
    folder = secrets_dir(home, space_id)
    if not folder.is_dir():
        return {}
    return {p.name: p.read_text() for p in sorted(folder.iterdir()) if SECRET_KEY.fullmatch(p.name)}


def write_secret(home: Path, space_id: str, key: str, value: str) -> None:
    folder = secrets_dir(home, space_id)
    for path in (Path(home) / "secrets", folder.parent, folder):
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
    tmp = folder / f".{key}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    os.replace(tmp, folder / key)


def delete_secret(home: Path, space_id: str, key: str) -> bool:
    try:
        (secrets_dir(home, space_id) / key).unlink()
        return True
    except FileNotFoundError:
        return False
