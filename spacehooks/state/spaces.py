"""The store's Spaces: their rows, variables, containers waiting for removal, worker heartbeats."""
from __future__ import annotations

import json
import os
import sqlite3
import time

STAGES = ("NO_APP_FILE", "CONFIG_ERROR", "BUILDING", "BUILD_ERROR", "APP_STARTING", "RUNNING",
          "RUNNING_BUILDING", "RUNNING_APP_STARTING", "RUNTIME_ERROR", "PAUSED", "STOPPED",
          "SLEEPING", "DELETING", "WAITING_CAPACITY")
# A container answers on the Space's port in these stages.
ANSWERING = ("RUNNING", "RUNNING_BUILDING", "RUNNING_APP_STARTING")
# A container has been started in these (in APP_STARTING it may not answer yet).
STARTED = (*ANSWERING, "APP_STARTING")
_JSON_FIELDS = ("config", "limits")


class Spaces:
    """State's methods on spaces, variables, retired and workers (self.conn is the store's)."""
    conn: sqlite3.Connection

    def get_space(self, space_id: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM spaces WHERE id = ?", (space_id,)).fetchone()
        return _space(row) if row else None

    def list_spaces(self) -> list[dict]:
        return [_space(r) for r in self.conn.execute("SELECT * FROM spaces ORDER BY id")]

    def ensure_space(self, space_id: str, repo_path, **defaults) -> dict:
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

    def count_restart(self, space_id: str) -> None:
        with self.conn:
            self.conn.execute("UPDATE spaces SET restarts = restarts + 1 WHERE id = ?", (space_id,))

    def delete_space(self, space_id: str) -> None:
        with self.conn:
            for table in ("variables", "retired"):
                self.conn.execute(f"DELETE FROM {table} WHERE space_id = ?", (space_id,))
            self.conn.execute("DELETE FROM builds WHERE space_id = ?", (space_id,))
            self.conn.execute("DELETE FROM spaces WHERE id = ?", (space_id,))

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


def _space(row: sqlite3.Row) -> dict:
    out = dict(row)
    for key in _JSON_FIELDS:
        out[key] = json.loads(out[key] or "{}")
    return out
