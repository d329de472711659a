"""The admin commands on people and access: users, organisations, members, tokens, SSH keys,
a Space's visibility, and the audit log."""
from __future__ import annotations

import datetime
import os
import pwd
import re
import sys
from pathlib import Path
from typing import Callable

from spacehooks import accounts, proc, sshcommands, stages
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError

Echo = Callable[[str], None]
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_KEY = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com"
                  r"|sk-ecdsa-sha2-nistp256@openssh\.com) ([A-Za-z0-9+/]+={0,3})(?: ([\x21-\x7e ]{0,200}))?")


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def duration(text: str) -> float:
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise SpaceError(f"{text!r} is not a duration", hint="for example 30d, 12h, 90m")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _with_state(settings, job):
    st = state_mod.open(settings)
    try:
        return job(st)
    finally:
        st.close()


def users_add(settings, name: str, admin: bool, echo: Echo) -> None:
    _with_state(settings, lambda st: accounts.add_user(settings, st, name, admin))
    echo(f"user {name} added{' (admin)' if admin else ''}; give them a token: spacehooks tokens create {name}")


def orgs_add(settings, name: str, echo: Echo) -> None:
    _with_state(settings, lambda st: accounts.add_org(settings, st, name))
    echo(f"organisation {name} added; add members: spacehooks orgs member add {name} USER")


def remove(settings, name: str, echo: Echo) -> None:
    _with_state(settings, lambda st: accounts.remove_account(settings, st, name))
    echo(f"{name} removed, its tokens revoked (its Spaces stay)")


def member(settings, org: str, user: str, add: bool, echo: Echo) -> None:
    _with_state(settings, lambda st: accounts.set_member(settings, st, org, user, add))
    echo(f"{user} {'added to' if add else 'removed from'} {org}")


def users_list(settings, echo: Echo) -> None:
    def job(st):
        rows = st.accounts()
        if not rows:
            echo("no users yet: spacehooks users add NAME")
        for a in rows:
            extra = st.orgs_of(a["name"]) if a["kind"] == "user" else st.members(a["name"])
            label = "admin" if a["admin"] else a["kind"]
            echo(f"{a['name']:24} {label:6} {('orgs: ' if a['kind'] == 'user' else 'members: ') + (', '.join(extra) or '-')}")
    _with_state(settings, job)


def tokens_create(settings, user: str, scope: str, expires: str | None, name: str, echo: Echo) -> None:
    lifetime = duration(expires) if expires else None
    token_id, token = _with_state(settings, lambda st: accounts.create_token(st, user, scope, lifetime, name))
    echo(token)
    echo(f"token {token_id} for {user} ({scope}{', expires in ' + expires if expires else ''}): "
         "shown once, store it now (HF_TOKEN=... or `hf auth login`)", )


def tokens_list(settings, user: str | None, echo: Echo) -> None:
    rows = _with_state(settings, lambda st: st.tokens(user))
    echo(f"{'ID':12} {'USER':16} {'SCOPE':6} {'CREATED':21} {'EXPIRES':21} {'STATE':8} NAME")
    now = datetime.datetime.now(datetime.timezone.utc).timestamp()
    for t in rows:
        state = "revoked" if t["revoked_at"] else "expired" if t["expires_at"] and t["expires_at"] <= now else "active"
        echo(f"{t['id']:12} {t['user']:16} {t['scope']:6} {_when(t['created_at']):21} {_when(t['expires_at']):21} "
             f"{state:8} {t['name']}")


def tokens_revoke(settings, token_id: str, echo: Echo) -> None:
    if not _with_state(settings, lambda st: st.revoke_token(token_id)):
        raise SpaceError(f"there is no active token {token_id}", hint="see `spacehooks tokens list`")
    echo(f"token {token_id} revoked")


def visibility(settings, space_id: str, private: bool, echo: Echo) -> None:
    def job(st):
        if not st.set_private(space_id, private):
            raise SpaceError(f"there is no Space {space_id}", hint="see `spacehooks spaces`")
        accounts.audit(st, accounts.Identity("admin", True, credential="cli"), "visibility", space_id,
                       "private" if private else "public")
        accounts.write_access_file(settings, st)
    _with_state(settings, job)
    echo(f"{space_id} is {'private' if private else 'public'}")


def audit(settings, space_id: str | None, user: str | None, limit: int, echo: Echo) -> None:
    rows = _with_state(settings, lambda st: st.audit(space_id, user, limit))
    if not rows:
        echo("nothing recorded yet")
    for r in rows:
        detail = f" {r['detail']}" if r["detail"] else ""
        echo(f"{_when(r['at'])} {r['actor']} ({r['credential']}) {r['action']} {r['space_id'] or '-'}{detail}")


def ssh_key_add(settings, user: str, keyfile: Path, authorized_keys: Path | None, echo: Echo) -> None:
    """One authorized_keys line whose forced command names `user`: the SSH gate lets that key
    push to and clone only what the owner rules allow."""
    def job(st):
        if (st.account(user) or {}).get("kind") != "user":
            raise SpaceError(f"there is no user {user}", hint=f"add them with `spacehooks users add {user}`")
        accounts.write_access_file(settings, st)
    _with_state(settings, job)
    text = keyfile.read_text().strip()
    match = _KEY.fullmatch(text)
    if match is None:  # options or several keys in the file would change what the line allows
        raise SpaceError(f"{keyfile} is not one OpenSSH public key (TYPE BASE64 [COMMENT])")
    target = authorized_keys or _git_home(settings) / ".ssh" / "authorized_keys"
    command = f"{sys.executable} -m spacehooks.sshgate {user}"
    line = f'command="{command}",restrict {match.group(1)} {match.group(2)} {match.group(3) or user}\n'
    existing = target.read_text() if target.exists() else ""
    if f" {match.group(2)} " in existing or existing.rstrip().endswith(match.group(2)):
        raise SpaceError(f"this key is in {target} already", hint="remove its line there first")
    target.parent.mkdir(mode=0o700, exist_ok=True)
    # the server's own record of whose key this is: SSH commands trust it, never the key file
    listed = proc.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(keyfile)], timeout=30).stdout.decode().split()
    sshcommands.record_key(settings.home, listed[1], user)
    with open(target, "a") as fh:
        fh.write(line)
    root = Path(settings["repo_root"])
    if os.geteuid() == 0 and root.exists() and root.stat().st_uid != 0:
        for path in (target.parent, target):
            os.chown(path, root.stat().st_uid, root.stat().st_gid)
    echo(f"key added for {user} in {target}")


def _git_home(settings) -> Path:
    root = Path(settings["repo_root"])
    try:
        return Path(pwd.getpwuid(root.stat().st_uid).pw_dir)
    except (KeyError, FileNotFoundError):
        raise SpaceError(f"cannot tell the git account from repo_root {root}",
                         hint="give the file with --authorized-keys") from None


def create(settings, space_id: str, private: bool, echo: Echo) -> Path:
    """`spacehooks create [--private]`: the repository, and with --private its Space recorded
    as private before anything is pushed (so its first build is never public)."""
    from spacehooks import install
    repo = install.create_repo(settings, space_id, echo=echo)
    if private:
        register(settings, accounts.check_space_id(space_id.removesuffix(".git")), repo, private=True)
        echo(f"{space_id.removesuffix('.git')} is private: only its owner's members see it")
    return repo


def register(settings, space_id: str, repo: Path, private: bool, sdk: str | None = None) -> None:
    def job(st):
        st.ensure_space(space_id, repo, hardware=settings["run.default_hardware"])
        row = st.get_space(space_id)
        if row["commit"] is None and row["stage"] == stages.NEW:
            stages.change(st, space_id, stages.NO_APP_FILE, "create")
        fields = {}
        if sdk:
            fields["config"] = {"sdk": sdk}
        st.update_space(space_id, **fields)
        st.set_private(space_id, private)
        accounts.write_access_file(settings, st)
    _with_state(settings, job)
