"""The store's builds: the queue's transactions (record, claim, supersede, cancel) and their rows."""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

# build statuses are follow.py's: post-receive on the git account reads them without SQLite
from spacehooks import follow
from spacehooks.follow import CANCELLED, FINAL, QUEUED, RUNNING, SUPERSEDED


class Builds:
    """State's methods on builds (self.conn and self.home are the store's)."""
    conn: sqlite3.Connection
    home: Path

    def get_build(self, build_id: int) -> dict | None:
        row = self.conn.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
        return _build(row) if row else None

    def builds(self, space_id: str, limit: int = 50) -> list[dict]:
        rows = self.conn.execute("SELECT * FROM builds WHERE space_id = ? ORDER BY id DESC LIMIT ?",
                                 (space_id, limit))
        return [_build(r) for r in rows]

    def queue_build(self, space_id: str, commit: str, pusher: str, no_cache: bool, config: dict) -> int:
        """Record a queued build, superseding the Space's queued ones and asking its running one
        to stop, in one transaction; returns the new build's id."""
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("UPDATE builds SET status = ?, finished_at = ?, error = ? WHERE space_id = ? AND status = ?",
                              (SUPERSEDED, now, "superseded by a newer push", space_id, QUEUED))
            self.conn.execute("UPDATE builds SET stop_requested = 1 WHERE space_id = ? AND status = ?",
                              (space_id, RUNNING))
            cur = self.conn.execute(
                'INSERT INTO builds (space_id, "commit", pusher, status, no_cache, config, created_at)'
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (space_id, commit, pusher, QUEUED, int(no_cache), json.dumps(config), now))
            build_id = cur.lastrowid
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return build_id

    def claim_next_build(self, max_running: int) -> dict | None:
        """Mark the oldest queued build whose Space has none running as this process's, if fewer
        than max_running run; one transaction, so two workers never claim the same build."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            running = self.conn.execute("SELECT COUNT(*) FROM builds WHERE status = ?", (RUNNING,)).fetchone()[0]
            row = None
            if running < max_running:
                row = self.conn.execute(
                    "SELECT id FROM builds b WHERE status = ? AND NOT EXISTS ("
                    " SELECT 1 FROM builds r WHERE r.space_id = b.space_id AND r.status = ?) ORDER BY id LIMIT 1",
                    (QUEUED, RUNNING)).fetchone()
            if row:
                self.conn.execute("UPDATE builds SET status = ?, started_at = ?, worker_pid = ? WHERE id = ?",
                                  (RUNNING, time.time(), os.getpid(), row[0]))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return self.get_build(row[0]) if row else None

    def running_builds(self) -> list[tuple[int, int | None]]:
        """(build id, worker pid) of every running build."""
        return [(r[0], r[1]) for r in
                self.conn.execute("SELECT id, worker_pid FROM builds WHERE status = ?", (RUNNING,)).fetchall()]

    def pending_build_count(self, space_id: str) -> int:
        """The Space's builds that are queued or running."""
        return self.conn.execute("SELECT COUNT(*) FROM builds WHERE space_id = ? AND status IN (?, ?)",
                                 (space_id, QUEUED, RUNNING)).fetchone()[0]

    def stop_requested(self, build_id: int) -> bool:
        row = self.conn.execute("SELECT stop_requested FROM builds WHERE id = ?", (build_id,)).fetchone()
        return bool(row and row[0])

    def cancel_builds(self, space_id: str) -> None:
        """The Space's queued and running builds end as cancelled; a running one is asked to stop."""
        self.conn.execute("UPDATE builds SET status = ?, stop_requested = 1 WHERE space_id = ? AND status IN (?, ?)",
                          (CANCELLED, space_id, QUEUED, RUNNING))

    def build_stats(self, bounds: tuple[float, ...]) -> dict:
        """For metrics: builds by status; per final status the count, summed seconds and the
        count within each bound (of builds that started); per Space its last final build."""
        final = ", ".join("?" * len(FINAL))
        by_status = dict(self.conn.execute("SELECT status, COUNT(*) FROM builds GROUP BY status").fetchall())
        within = ", ".join("SUM(d <= ?)" for _ in bounds)
        rows = self.conn.execute(
            f"SELECT status, COUNT(*), TOTAL(d){', ' + within if bounds else ''} FROM "
            f"(SELECT status, finished_at - started_at AS d FROM builds WHERE status IN ({final})"
            " AND started_at IS NOT NULL AND finished_at IS NOT NULL) GROUP BY status",
            (*bounds, *FINAL)).fetchall()
        durations = {r[0]: (r[1], r[2], tuple(r[3:])) for r in rows}
        last = self.conn.execute(
            "SELECT space_id, id, status, started_at, finished_at FROM builds WHERE id IN"
            f" (SELECT MAX(id) FROM builds WHERE status IN ({final}) GROUP BY space_id)", FINAL).fetchall()
        return {"by_status": by_status, "durations": durations, "last": [tuple(r) for r in last]}

    def update_build(self, build_id: int, **fields) -> None:
        if "config" in fields and not isinstance(fields["config"], str):
            fields["config"] = json.dumps(fields["config"])
        columns = ", ".join(f'"{k}" = ?' for k in fields)
        with self.conn:
            self.conn.execute(f"UPDATE builds SET {columns} WHERE id = ?", (*fields.values(), build_id))

    def continue_build_ids(self, last: int) -> None:
        """Number new builds after `last` (a rebuilt store must not reuse the ids of old logs and images)."""
        with self.conn:
            if self.conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'builds'",
                                 (last,)).rowcount == 0:
                self.conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('builds', ?)", (last,))

    def build_log_path(self, space_id: str, build_id: int) -> Path:
        return follow.build_log(self.home, space_id, build_id)

    def run_log_path(self, space_id: str) -> Path:
        return self.home / "logs" / "run" / f"{space_id}.log"


def _build(row: sqlite3.Row) -> dict:
    out = dict(row)
    out["config"] = json.loads(out["config"] or "{}")
    out["no_cache"] = bool(out["no_cache"])
    return out
