"""The forced command of the plain SSH server's keys (`spacehooks users ssh-key add`): runs as
the git account, names the key's user, and lets git-shell run the one git command asked for
when the owner rules allow it: push to what the user may write, clone what they may read.

The git account cannot open the state store: it reads the access file the server writes
(accounts.write_access_file). Without one (no users added yet) a key owns its own namespace.
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import sys
from pathlib import Path

from spacehooks.access import accounts
from spacehooks import config as config_mod

VERBS = {"git-receive-pack": accounts.WRITE, "git-upload-pack": accounts.READ, "git-upload-archive": accounts.READ}


class Refused(Exception):
    pass


def repo_root(settings) -> Path:
    # sshd's SetEnv may name it (contrib/ssh/README.md), as the shell wrapper always allowed
    return Path(os.environ.get("SPACEHOOKS_REPO_ROOT") or settings["repo_root"]).resolve()


def decide(settings, user: str, command: str | None, access: dict | None) -> tuple[str, str, str]:
    """(verb, path relative to repo_root, Space id) when the key's user may run `command`."""
    try:
        accounts.check_name(user, "user name")
    except Exception as exc:
        raise Refused(f"bad user name in authorized_keys: {exc}") from None
    if not command:
        raise Refused(f"Hi {user}! This account only serves git (git push / git clone); there is no shell.")
    try:
        words = shlex.split(command)
    except ValueError:
        words = []
    if len(words) != 2 or words[0] not in VERBS:
        raise Refused("only git push, fetch and clone are served here")
    verb, path = words
    root = repo_root(settings)
    rel = path.lstrip("/")
    if path.startswith("/"):
        if not (path.rstrip("/") + "/").startswith(str(root) + "/"):
            raise Refused(f"{path} is outside {root}")
        rel = path[len(str(root)):].lstrip("/")
    parts = [p for p in rel.rstrip("/").split("/") if p]
    if any(p in (".", "..") for p in parts) or len(parts) != 2:
        raise Refused(f"{path}: give OWNER/NAME.git")
    try:  # checked here, not left to git-shell's quoting: the path is put back into a command
        space_id = accounts.check_space_id(f"{parts[0]}/{parts[1].removesuffix('.git')}")
    except Exception:
        raise Refused(f"{path}: give OWNER/NAME.git (letters, digits, . _ -)") from None
    if access is not None and user not in access.get("users", {}):
        raise Refused(f"{user} is not a user of this server")
    identity = accounts.key_identity(access, user)
    space = {"id": space_id, "private": space_id in (access or {}).get("private", ())}
    if not accounts.may(identity, VERBS[verb], space):
        if not accounts.may(identity, accounts.READ, space):  # a private Space is not named to strangers
            raise Refused(f"repository {space_id} not found")
        raise Refused(f"{user} may not push to {space_id}: it belongs to {parts[0]}")
    return verb, "/".join(parts), space_id


COMMANDS = ("help", "spaces", "status", "logs", "restart", "secrets")
SOCKET = accounts.SSH_SOCKET  # the server listens (sshcommands.listen)


def ask(home, user: str, args: list, stdin: str) -> tuple[int, str]:
    """The SSH gate's side: send the words, get (exit code, text)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(900)
        try:
            sock.connect(str(Path(home) / SOCKET))
        except OSError as exc:
            return 1, f"the server is not taking SSH commands ({exc.strerror}); ask the admin"
        sock.sendall(json.dumps({"user": user, "args": args, "stdin": stdin}).encode() + b"\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    try:
        reply = json.loads(data)
        return int(reply["code"]), str(reply["text"])
    except (ValueError, KeyError, TypeError):
        return 1, "the server gave no answer"


def author_command(settings, user: str, words: list[str]) -> int:
    """Commands for authors: the server answers them, deciding itself whose key logged in
    (sshcommands.who_asks); this account only passes the words and, for `secrets set`, the
    value from standard input."""
    try:
        accounts.check_name(user, "user name")
    except Exception as exc:
        raise Refused(f"bad user name in authorized_keys: {exc}") from None
    stdin = sys.stdin.read(65537) if words[:2] == ["secrets", "set"] else ""
    if len(stdin) > 65536:
        raise Refused("a secret's value is at most 64 KiB")
    code, text = ask(settings.home, user, words, stdin)
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("spacehooks-sshgate: usage: python -m spacehooks.sshgate USER (in authorized_keys command=)",
              file=sys.stderr)
        return 1
    user = argv[0]
    try:
        settings = config_mod.load()
        try:
            access = accounts.read_access_file(settings.home)
        except (OSError, ValueError) as exc:  # fail closed: a rule we cannot read allows nothing
            raise Refused(f"the access rules cannot be read ({exc}); ask the admin") from None
        command = os.environ.get("SSH_ORIGINAL_COMMAND") or ""
        words = command.split()
        if words and words[0] in COMMANDS:
            return author_command(settings, user, words)
        verb, rel, _ = decide(settings, user, command, access)
    except Refused as exc:
        print(f"spacehooks: {exc}", file=sys.stderr)
        return 1
    os.chdir(repo_root(settings))
    os.environ["SPACEHOOKS_PUSHER"] = user
    os.execvp("git-shell", ["git-shell", "-c", f"{verb} '{rel}'"])
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
