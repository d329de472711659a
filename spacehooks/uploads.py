"""Commits made from uploads (the Hub's `create_commit`: upload_file, upload_folder, `hf upload`)
that reach the Space exactly as a push does: through its pre-receive gate and post-receive.

The commit is built in a throwaway bare repository whose objects/info/alternates names the
Space's repository (nothing is written into the Space's repository but by the push), by
`git fast-import` from the parent's tree, and then pushed with `git push` so the Space's own
hooks decide. Every git command runs as the account that owns the Space's repository, never
as the server's account in a repository another account writes to.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from spacehooks import proc
from spacehooks.errors import SpaceError
from spacehooks.treewriter import name_problem

MAX_PATH = 4096
KEPT_ENV = ("PATH", "LANG", "SPACEHOOKS_CONFIG", "SPACEHOOKS_HOME", "SPACEHOOKS_REPO_ROOT")


class Stale(SpaceError):
    """The branch moved since the parent the client named (the Hub answers 412)."""


class Declined(SpaceError):
    """The Space's gate refused the commit; the message is what a pusher would read."""


class Missing(SpaceError):
    """A file or folder to delete is not in the parent commit."""


@dataclass
class Change:
    files: dict = field(default_factory=dict)       # path -> bytes
    deleted_files: list = field(default_factory=list)
    deleted_folders: list = field(default_factory=list)
    summary: str = ""
    description: str = ""
    parent: str | None = None


def check_path(path, folder: bool = False) -> str:
    """A path from the client as the tree will hold it: each part must be a valid tree entry
    name (treewriter.name_problem: no empty part, `.`, `..`, `.git`, NUL)."""
    if not isinstance(path, str) or not path or len(path.encode()) > MAX_PATH:
        raise SpaceError(f"{str(path)[:100]!r} is not a file path")
    if folder and path.endswith("/"):
        path = path[:-1]
    for part in path.split("/"):
        problem = name_problem(part.encode("utf-8", "surrogateescape"))
        if problem:
            raise SpaceError(f"{path!r}: {problem}")
    return path


def _quoted(path: str) -> bytes:
    """A path in fast-import's C-style quoting (always quoted: any byte may be in a name)."""
    out = bytearray(b'"')
    for byte in path.encode():
        if byte in (0x22, 0x5C):
            out += b"\\" + bytes([byte])
        elif byte < 0x20 or byte == 0x7F:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


def _ident(name: str, email_host: str) -> bytes:
    return f"{name} <{name}@{email_host}> {int(time.time())} +0000".encode()


def stream(change: Change, parent: str | None, author: str, email_host: str) -> bytes:
    message = (change.summary or "Upload files").strip()
    if change.description.strip():
        message += "\n\n" + change.description.strip()
    message = message.replace("\0", "") + "\n"
    body = message.encode()
    lines = [b"commit refs/heads/upload", b"author " + _ident(author, email_host),
             b"committer " + _ident(author, email_host), b"data %d" % len(body), body]
    if parent:
        lines.append(b"from " + parent.encode())
    for path in change.deleted_folders + change.deleted_files:
        lines.append(b"D " + _quoted(path))
    chunks = [b"\n".join(lines) + b"\n"]
    for path, content in change.files.items():
        chunks.append(b"M 100644 inline " + _quoted(path) + b"\ndata %d\n" % len(content) + content + b"\n")
    return b"".join(chunks) + b"done\n"


def _owner(repo: Path) -> int:
    try:
        return os.stat(repo / "objects").st_uid
    except OSError:
        raise SpaceError(f"the Space's repository {repo} is missing", hint="ask the admin") from None


def hook_env(home: str | Path, pusher: str | None) -> dict:
    """The environment of git and the Space's hooks run for an upload or an HTTPS push: only
    what they need of the server's (nothing else of root's environment reaches the git
    account), and the pusher as SPACEHOOKS_PUSHER alone."""
    env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
    env["HOME"] = str(home)
    if pusher:
        env["SPACEHOOKS_PUSHER"] = pusher
    return env


def _env(home: Path, pusher: str) -> dict:
    env = hook_env(home, pusher)
    env.update({"GIT_TERMINAL_PROMPT": "0",
                "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C.UTF-8"})
    return env


def _declined(stderr: str) -> str:
    """The gate's lines as the pusher reads them, without git's own chatter."""
    kept = []
    for line in stderr.splitlines():
        if line.startswith("remote: "):
            kept.append(line[8:].rstrip())
        elif line.startswith(("remote:", " ! [remote rejected]")):
            kept.append(line.removeprefix("remote:").rstrip())
    return "\n".join(l for l in kept if l.strip()) or stderr.strip()[-2000:]


def commit(settings, repo: Path, branch: str, change: Change, author: str, timeout: float = 600) -> str:
    """Push a commit made of `change` on top of `branch` (or on nothing, in an empty repository)
    to the Space's repository as `author`; returns the new commit's id once the gate took it."""
    repo = Path(repo)
    uid = _owner(repo)
    ref = f"refs/heads/{branch}"
    work = Path(tempfile.mkdtemp(prefix="spacehooks-upload-"))
    try:
        os.chown(work, uid, -1)
        env = _env(work, author)
        run = lambda args, **kw: proc.run(args, env=env, user=uid, timeout=timeout, **kw)  # noqa: E731
        tip = run(["git", "--git-dir", str(repo), "rev-parse", "--verify", "-q", ref + "^{commit}"],
                  check=False).stdout.decode().strip() or None
        if change.parent and change.parent != tip:
            raise Stale(f"the parent commit {change.parent} is not the tip of {branch} ({tip or 'empty'}): "
                        "someone pushed meanwhile; fetch and try again")
        if tip and (change.deleted_files or change.deleted_folders):
            listed = run(["git", "--git-dir", str(repo), "ls-tree", "-r", "-z", "--name-only", tip]).stdout
            present = set(listed.decode("utf-8", "surrogateescape").split("\0"))
            for path in change.deleted_files:
                if path not in present:
                    raise Missing(f"{path} is not in {branch}: nothing to delete")
            for path in change.deleted_folders:
                if not any(p.startswith(path + "/") for p in present):
                    raise Missing(f"{path}/ is not a folder in {branch}: nothing to delete")
        elif change.deleted_files or change.deleted_folders:
            raise Missing(f"{branch} has no files yet: nothing to delete")
        scratch = work / "repo.git"
        run(["git", "init", "-q", "--bare", str(scratch)])
        (scratch / "objects" / "info" / "alternates").write_text(str((repo / "objects").resolve()) + "\n")
        run(["git", "--git-dir", str(scratch), "fast-import", "--quiet", "--done"],
            input=stream(change, tip, author, settings["gateway.domain"]))
        new = run(["git", "--git-dir", str(scratch), "rev-parse", "refs/heads/upload"]).stdout.decode().strip()
        pushed = run(["git", "--git-dir", str(scratch), "push", "--porcelain", str(repo),
                      f"refs/heads/upload:{ref}"], check=False)
        if pushed.returncode != 0:
            err = pushed.stderr.decode(errors="replace")
            if "non-fast-forward" in err or "fetch first" in err or "stale info" in pushed.stdout.decode(errors="replace"):
                raise Stale(f"{branch} moved while the upload was committed; try again")
            raise Declined(_declined(err))
        return new
    finally:
        shutil.rmtree(work, ignore_errors=True)
