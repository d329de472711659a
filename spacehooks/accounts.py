"""Who is asking and what they may do: users, organisations, API tokens, the owner rules, the
audit log, and the access file the git account's SSH gate reads (it cannot open the store).

A token is `shk_<id>_<secret>`: the id names it in lists, the audit log and revocation; only
the sha256 of the whole token is stored, compared in constant time. The prefix lets the
gateway recognise its own tokens and strip them before a request reaches Space code.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from spacehooks.errors import SpaceError
from spacehooks.hookenv import NAME as _NAME
from spacehooks.state.users import ORG, USER

# in SPACEHOOKS_HOME: where the forced command (sshgate, the git account) asks the server
# (sshcommands) to run an author's SSH command
SSH_SOCKET = "ssh-commands.sock"

TOKEN_PREFIX = "shk_"
SCOPES = ("read", "write")
_TOKEN = re.compile(r"shk_([0-9a-f]{10})_[A-Za-z0-9_-]{40}")
ACCESS_FILE = "access.json"
READ, LOGS, WRITE = "read", "logs", "write"


@dataclass(frozen=True)
class Identity:
    name: str
    admin: bool = False
    orgs: frozenset = field(default_factory=frozenset)
    scope: str = "write"
    credential: str = "cli"  # "token:<id>", "key", "cli": what the audit log records

    def member_of(self, owner: str) -> bool:
        return self.admin or owner == self.name or owner in self.orgs


def check_name(name: str, what: str = "name") -> str:
    """Users and organisations are Space owners: the same rule as the owner part of a Space id."""
    if not isinstance(name, str) or len(name) > 96 or not _NAME.fullmatch(name):
        raise SpaceError(f"{what} {name!r} is not valid: use letters, digits, . _ - (at most 96),"
                         " starting with a letter or digit")
    return name


def check_space_id(space_id: str) -> str:
    owner, _, name = str(space_id).partition("/")
    if not owner or not name or "/" in name:
        raise SpaceError(f"{space_id!r} is not OWNER/NAME")
    check_name(owner, "owner")
    check_name(name, "Space name")
    return f"{owner}/{name}"


# --- users and organisations ---------------------------------------------------------------
def add_user(settings, st, name: str, admin: bool = False) -> None:
    check_name(name, "user name")
    if not st.add_account(name, USER, admin):
        raise SpaceError(f"{name} exists already", hint="see `spacehooks users list`")
    write_access_file(settings, st)


def add_org(settings, st, name: str) -> None:
    check_name(name, "organisation name")
    if not st.add_account(name, ORG):
        raise SpaceError(f"{name} exists already", hint="see `spacehooks users list`")
    write_access_file(settings, st)


def remove_account(settings, st, name: str) -> None:
    if not st.remove_account(name):
        raise SpaceError(f"there is no user or organisation {name}", hint="see `spacehooks users list`")
    write_access_file(settings, st)


def set_member(settings, st, org: str, user: str, member: bool) -> None:
    if (st.account(org) or {}).get("kind") != ORG:
        raise SpaceError(f"there is no organisation {org}", hint=f"add it with `spacehooks orgs add {org}`")
    if (st.account(user) or {}).get("kind") != USER:
        raise SpaceError(f"there is no user {user}", hint=f"add them with `spacehooks users add {user}`")
    changed = st.add_member(org, user) if member else st.remove_member(org, user)
    if not changed:
        raise SpaceError(f"{user} is {'already' if member else 'not'} a member of {org}")
    write_access_file(settings, st)


def identity_of(st, name: str, scope: str = "write", credential: str = "cli") -> Identity | None:
    account = st.account(name)
    if account is None or account["kind"] != USER:
        return None
    return Identity(name, bool(account["admin"]), frozenset(st.orgs_of(name)), scope, credential)


# --- tokens ------------------------------------------------------------------------------
def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(st, user: str, scope: str = "read", expires_in: float | None = None, name: str = "") -> tuple[str, str]:
    """(token id, the token): the token is shown once and never stored."""
    if scope not in SCOPES:
        raise SpaceError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if (st.account(user) or {}).get("kind") != USER:
        raise SpaceError(f"there is no user {user}", hint=f"add them with `spacehooks users add {user}`")
    if expires_in is not None and expires_in <= 0:
        raise SpaceError("a token's lifetime must be positive")
    token_id = secrets.token_hex(5)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(30)[:40]}"
    st.add_token(token_id, user, _digest(token), scope, name, time.time() + expires_in if expires_in else None)
    return token_id, token


def identify(st, token: str | None, now: float | None = None) -> Identity | None:
    """The user a token (from a bearer header or the sign-in cookie) stands for, or None:
    unknown, revoked, expired, or its user removed."""
    if not token:
        return None
    match = _TOKEN.fullmatch(token.strip())
    if match is None:
        return None
    row = st.token(match.group(1))
    # the digest is compared even for an unknown id, so the answer's timing says nothing
    expected = row["digest"] if row else "0" * 64
    if not hmac.compare_digest(expected, _digest(token.strip())) or row is None:
        return None
    if row["revoked_at"] is not None or (row["expires_at"] is not None and row["expires_at"] <= (now or time.time())):
        return None
    return identity_of(st, row["user"], row["scope"], f"token:{row['id']}")


def bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


# --- the owner rules ---------------------------------------------------------------------
def may(identity: Identity | None, action: str, space: dict | str) -> bool:
    """READ: see the Space (page, app, runtime, build logs): anyone when public, members when
    private. LOGS: its run log: members. WRITE: change it (settings, push, delete, create in
    that namespace): members with a write token, a key, or the admin command line."""
    space_id = space if isinstance(space, str) else space["id"]
    private = False if isinstance(space, str) else bool(space.get("private"))
    owner = space_id.partition("/")[0]
    member = identity is not None and identity.member_of(owner)
    if action == READ:
        return member or not private
    if action == LOGS:
        return member
    if action == WRITE:
        return member and identity.scope == "write"
    raise ValueError(action)


def audit(st, identity: Identity, action: str, space_id: str | None, detail: str = "") -> None:
    st.audit_add(identity.name, identity.credential, action, space_id, detail)


# --- the access file: owner rules for the git account's SSH gate -------------------------
def write_access_file(settings, st) -> Path:
    """SPACEHOOKS_HOME/access.json, readable by the git account's group: each user's admin
    flag and organisations, and the private Spaces. Names only, nothing secret."""
    home = Path(settings.home)
    data = {"users": {a["name"]: {"admin": bool(a["admin"]), "orgs": st.orgs_of(a["name"])}
                      for a in st.accounts(USER)},
            "orgs": [a["name"] for a in st.accounts(ORG)],
            "private": st.private_spaces()}
    tmp = home / f".{ACCESS_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o640)
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, home / ACCESS_FILE)
    return home / ACCESS_FILE


def read_access_file(home) -> dict | None:
    try:
        return json.loads((Path(home) / ACCESS_FILE).read_text())
    except FileNotFoundError:
        return None


def key_identity(access: dict | None, user: str) -> Identity:
    """Who an SSH key's forced command names. Without an access file (no users added yet) a
    key's user owns only their own namespace."""
    entry = (access or {}).get("users", {}).get(user) or {}
    return Identity(user, bool(entry.get("admin")), frozenset(entry.get("orgs", ())), "write", "key")


def restore(settings, st, access: dict) -> None:
    """After `state rebuild`: the accounts, memberships and private Spaces the access file names."""
    for name, entry in (access.get("users") or {}).items():
        st.add_account(check_name(name), USER, bool(entry.get("admin")))
    for name in access.get("orgs") or []:
        st.add_account(check_name(name), ORG)
    for name, entry in (access.get("users") or {}).items():
        for org in entry.get("orgs") or []:
            st.add_member(org, name)
    for space_id in access.get("private") or []:
        st.set_private(space_id, True)
    write_access_file(settings, st)
