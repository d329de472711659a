"""The store's GPU allocations: which Space holds which device (table gpu_allocations).

They live in the store so that they survive restarts of spacehooks and are shared by every
process that starts Spaces (worker, gateway's wake-ups, admin commands). What to allocate is
gpu.py's business (flavors, CDI inventory); here is only how it is recorded.
"""
from __future__ import annotations

import sqlite3
import time
from typing import Callable


class Gpus:
    """State's methods on gpu_allocations (self.conn is the store's)."""
    conn: sqlite3.Connection

    def gpu_allocations(self) -> list[dict]:
        """Every allocation, ordered by kind, device and Space."""
        rows = self.conn.execute("SELECT kind, device, space_id, shared FROM gpu_allocations "
                                 "ORDER BY kind, device, space_id").fetchall()
        return [dict(r) for r in rows]

    def allocate_gpus(self, space_id: str, kind: str, shared: bool,
                      choose: Callable[[list], list[str] | None]) -> list[str]:
        """The Space's devices of `kind`: `choose` sees every allocation and returns the devices to
        keep as they are (None) or to give the Space instead of what it holds; one IMMEDIATE
        transaction, so two Spaces starting at once never both take the last free GPU."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            rows = self.conn.execute("SELECT * FROM gpu_allocations").fetchall()
            chosen = choose(rows)
            if chosen is None:
                chosen = [r["device"] for r in rows if r["space_id"] == space_id]
            else:
                self.conn.execute("DELETE FROM gpu_allocations WHERE space_id = ?", (space_id,))
                now = time.time()
                self.conn.executemany("INSERT INTO gpu_allocations VALUES (?, ?, ?, ?, ?)",
                                      [(kind, d, space_id, int(shared), now) for d in chosen])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return chosen

    def release_gpus(self, space_id: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM gpu_allocations WHERE space_id = ?", (space_id,))

    def gpu_holdings(self) -> list[dict]:
        """Every allocation with all its columns, in no particular order."""
        return [dict(r) for r in self.conn.execute("SELECT * FROM gpu_allocations")]
