"""The store's storage records: which Space has persistent storage, of which tier and size,
and the id-range slot its containers map uid 1000 into (table storage). What a record means
on disk is storage.py's business; here is only how it is recorded.
"""
from __future__ import annotations

import sqlite3
import time

# persistent /data storage per Space (issue 15): migration 5 (store.py), additive
STORAGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS storage (
    space_id TEXT PRIMARY KEY,
    tier TEXT NOT NULL,
    size_mb INTEGER NOT NULL,
    slot INTEGER NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
"""


class Storage:
    """State's methods on storage (self.conn is the store's)."""
    conn: sqlite3.Connection

    def storage_of(self, space_id: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM storage WHERE space_id = ?", (space_id,)).fetchone()
        return dict(row) if row else None

    def storage_all(self) -> list[dict]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM storage ORDER BY space_id")]

    def storage_assign(self, space_id: str, tier: str, size_mb: int, slots: int, prefer: int | None = None) -> dict:
        """Record the Space's tier; a Space that had none gets slot `prefer` if free, else the
        lowest free one. One IMMEDIATE transaction, so two Spaces given storage at once never
        share a slot (an id range)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            row = self.conn.execute("SELECT slot FROM storage WHERE space_id = ?", (space_id,)).fetchone()
            if row:
                self.conn.execute("UPDATE storage SET tier = ?, size_mb = ? WHERE space_id = ?",
                                  (tier, size_mb, space_id))
            else:
                used = {r[0] for r in self.conn.execute("SELECT slot FROM storage")}
                free = [s for s in ([prefer] if prefer is not None and 0 <= prefer < slots else []) + list(range(slots))
                        if s not in used]
                slot = free[0] if free else None
                if slot is None:
                    raise LookupError(f"all {slots} id ranges are taken")
                self.conn.execute("INSERT INTO storage (space_id, tier, size_mb, slot, created_at)"
                                  " VALUES (?, ?, ?, ?, ?)", (space_id, tier, size_mb, slot, time.time()))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return self.storage_of(space_id)

    def storage_forget(self, space_id: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM storage WHERE space_id = ?", (space_id,))
