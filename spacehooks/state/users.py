"""The store's people: users and organisations (one namespace, as Space owners), members,
API tokens (hashes only), the audit log, and which Spaces are private."""
from __future__ import annotations

import sqlite3
import time

USER, ORG = "user", "org"
# part of the store's SCHEMA (store.py): new tables only, so additive
USERS_SCHEMA = """
-- users and organisations share one namespace: a Space's owner is either (state/users.py)
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    org TEXT NOT NULL,
    user TEXT NOT NULL,
    added_at REAL NOT NULL,
    PRIMARY KEY (org, user)
);
-- API tokens: the secret part is never stored, only its sha256 (accounts.py)
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    digest TEXT NOT NULL,
    scope TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    credential TEXT NOT NULL,
    action TEXT NOT NULL,
    space_id TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
"""


class Users:
    """State's methods on accounts, members, tokens and audit (self.conn is the store's)."""
    conn: sqlite3.Connection

    # --- users and organisations ----------------------------------------------------------
    def add_account(self, name: str, kind: str, admin: bool = False) -> bool:
        """False when the name is taken (by a user or an organisation)."""
        with self.conn:
            return self.conn.execute(
                "INSERT OR IGNORE INTO accounts (name, kind, admin, created_at) VALUES (?, ?, ?, ?)",
                (name, kind, int(admin), time.time())).rowcount > 0

    def account(self, name: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM accounts WHERE name = ?", (name,)).fetchone()
        return dict(row) if row else None

    def accounts(self, kind: str | None = None) -> list[dict]:
        rows = self.conn.execute("SELECT * FROM accounts WHERE ? IS NULL OR kind = ? ORDER BY name", (kind, kind))
        return [dict(r) for r in rows]

    def remove_account(self, name: str) -> bool:
        """The account, its memberships (either side) and its tokens go; its Spaces stay."""
        with self.conn:
            self.conn.execute("DELETE FROM members WHERE org = ? OR user = ?", (name, name))
            self.conn.execute("UPDATE tokens SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL",
                              (time.time(), name))
            return self.conn.execute("DELETE FROM accounts WHERE name = ?", (name,)).rowcount > 0

    def add_member(self, org: str, user: str) -> bool:
        with self.conn:
            return self.conn.execute("INSERT OR IGNORE INTO members (org, user, added_at) VALUES (?, ?, ?)",
                                     (org, user, time.time())).rowcount > 0

    def remove_member(self, org: str, user: str) -> bool:
        with self.conn:
            return self.conn.execute("DELETE FROM members WHERE org = ? AND user = ?", (org, user)).rowcount > 0

    def orgs_of(self, user: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT org FROM members WHERE user = ? ORDER BY org", (user,))]

    def members(self, org: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT user FROM members WHERE org = ? ORDER BY user", (org,))]

    # --- tokens: only their sha256 is kept ------------------------------------------------
    def add_token(self, token_id: str, user: str, digest: str, scope: str, name: str,
                  expires_at: float | None) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO tokens (id, user, digest, scope, name, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", (token_id, user, digest, scope, name, time.time(), expires_at))

    def token(self, token_id: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return dict(row) if row else None

    def tokens(self, user: str | None = None) -> list[dict]:
        rows = self.conn.execute("SELECT * FROM tokens WHERE ? IS NULL OR user = ? ORDER BY created_at, id",
                                 (user, user))
        return [dict(r) for r in rows]

    def revoke_token(self, token_id: str) -> bool:
        with self.conn:
            return self.conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                     (time.time(), token_id)).rowcount > 0

    # --- private Spaces -------------------------------------------------------------------
    def set_private(self, space_id: str, private: bool) -> bool:
        with self.conn:
            return self.conn.execute("UPDATE spaces SET private = ? WHERE id = ?",
                                     (int(private), space_id)).rowcount > 0

    def private_spaces(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM spaces WHERE private = 1 ORDER BY id")]

    # --- audit ----------------------------------------------------------------------------
    def audit_add(self, actor: str, credential: str, action: str, space_id: str | None, detail: str = "") -> None:
        with self.conn:
            self.conn.execute("INSERT INTO audit (at, actor, credential, action, space_id, detail)"
                              " VALUES (?, ?, ?, ?, ?, ?)", (time.time(), actor, credential, action, space_id, detail))

    def audit(self, space_id: str | None = None, actor: str | None = None, limit: int = 100) -> list[dict]:
        rows = self.conn.execute(
            "SELECT * FROM audit WHERE (? IS NULL OR space_id = ?) AND (? IS NULL OR actor = ?)"
            " ORDER BY id DESC LIMIT ?", (space_id, space_id, actor, actor, limit))
        return [dict(r) for r in rows][::-1]
