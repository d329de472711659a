"""Real git repositories for tests: a working copy with files, a bare repo, a push."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author", "GIT_COMMITTER_EMAIL": "author@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}

GRADIO_README = """---
title: Demo
emoji: 🚀
colorFrom: blue
colorTo: green
sdk: gradio
sdk_version: 4.44.1
app_file: app.py
pinned: false
---
# Demo
"""


def git(*args, cwd=None, check=True, input=None, env=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **GIT_ENV, **(env or {})}
    return subprocess.run(["git", *args], cwd=cwd, check=check, input=input, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def write_files(root: Path, files: dict) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.unlink(missing_ok=True)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def work_repo(path: Path, files: dict, message: str = "initial") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if not (path / ".git").exists():
        git("init", "-q", "-b", "main", str(path))
    write_files(path, files)
    git("add", "-A", cwd=path)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=path)
    return path


def bare_repo(root: Path, space_id: str) -> Path:
    path = root / f"{space_id}.git"
    path.parent.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "--bare", "-b", "main", str(path))
    return path


def push(work: Path, remote: str, ref: str = "main", *options: str, force: bool = False,
         env=None) -> subprocess.CompletedProcess:
    args = ["push", "--porcelain"]
    for option in options:
        args += ["-o", option]
    if force:
        args.append("--force")
    return git(*args, remote, ref if ":" in ref else f"HEAD:{ref}" if ref.startswith("refs/") else f"HEAD:refs/heads/{ref}", cwd=work, check=False, env=env)


def refs_and_objects(bare: Path) -> tuple:
    """Everything a rejected push must leave unchanged."""
    refs = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare).stdout
    objects = git("count-objects", "-v", cwd=bare).stdout
    listing = sorted(str(p.relative_to(bare)) for p in (bare / "objects").rglob("*") if p.is_file())
    return refs, objects, listing


def raw_tree(repo: Path, entries) -> str:
    """A tree object stored as given, unchecked (git mktree refuses most bad names):
    entries are (mode, name as bytes, object id); returns the tree's id."""
    data = b"".join(mode.encode() + b" " + name + b"\0" + bytes.fromhex(oid) for mode, name, oid in entries)
    result = subprocess.run(["git", "hash-object", "-t", "tree", "--literally", "-w", "--stdin"], cwd=repo,
                            input=data, check=True, stdout=subprocess.PIPE, env={**os.environ, **GIT_ENV})
    return result.stdout.decode().strip()


def raw_blob(repo: Path, data: bytes) -> str:
    result = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=data, check=True,
                            stdout=subprocess.PIPE, env={**os.environ, **GIT_ENV})
    return result.stdout.decode().strip()


def raw_commit(repo: Path, tree: str, *parents: str, message: str = "raw") -> str:
    args = ["git", "commit-tree", tree, "-m", message]
    for parent in parents:
        args += ["-p", parent]
    result = subprocess.run(args, cwd=repo, check=True, stdout=subprocess.PIPE, env={**os.environ, **GIT_ENV})
    return result.stdout.decode().strip()
