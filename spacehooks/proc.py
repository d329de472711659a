"""The one place that runs other programs (git included): argument lists, never shell strings."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Mapping, Sequence


# git exports these to hooks; a child git that inherits them operates on the wrong repo.
GIT_ENV_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH", "GIT_PREFIX")


def clean_env(extra: Mapping[str, str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in GIT_ENV_VARS}
    if extra:
        env.update(extra)
    return env


def as_account(user: int | None) -> dict:
    """subprocess arguments that run a child as account `user` with its primary and
    supplementary groups (the git account writes push records through its group), none of
    ours; {} when it is our own account."""
    if user is None or user == os.geteuid():
        return {}
    import pwd
    entry = pwd.getpwuid(user)
    return {"user": user, "group": entry.pw_gid, "extra_groups": os.getgrouplist(entry.pw_name, entry.pw_gid)}


def run(args: Sequence[str], *, cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
        input: bytes | None = None, timeout: float | None = None, check: bool = True,
        capture: bool = True, user: int | None = None) -> subprocess.CompletedProcess:
    """`user`: run as that account (its own groups, as at its login) when it is not ours."""
    from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
    switch = as_account(user)
    try:
        result = subprocess.run(list(args), cwd=cwd, env=env, input=input, timeout=timeout,
                                stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.PIPE if capture else None, **switch)
    except FileNotFoundError as exc:
        raise SpaceError(f"{args[0]}: command not found", hint=f"install {args[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise SpaceError(f"{' '.join(map(str, args[:3]))}: timed out after {timeout}s") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or b"").decode(errors="replace").strip()
        raise SpaceError(f"{' '.join(map(str, args[:3]))} failed (exit {result.returncode})"
                         + (f": {detail}" if detail else ""))
    return result


def run_streams(args: Sequence[str], *, stdin=None, stdout=None, cwd: str | Path | None = None,
                timeout: float | None = None, ok: Sequence[int] = (0,)) -> int:
    """Run args with open files as stdin/stdout (a tar of a Space's storage: too big for memory);
    an exit code outside `ok` is a SpaceError, else it is returned."""
    from spacehooks.errors import SpaceError
    try:
        result = subprocess.run(list(args), stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd,
                                timeout=timeout)
    except FileNotFoundError as exc:
        raise SpaceError(f"{args[0]}: command not found", hint=f"install {args[0]}") from exc
    if result.returncode not in ok:
        detail = result.stderr.decode(errors="replace").strip()
        raise SpaceError(f"{' '.join(map(str, args[:3]))} failed (exit {result.returncode})"
                         + (f": {detail}" if detail else ""))
    return result.returncode


def git(args: Sequence[str], git_dir: str | Path | None = None, **kw) -> str:
    base = ["git"] + (["--git-dir", str(git_dir)] if git_dir else [])
    return run(base + list(args), env=kw.pop("env", clean_env()), **kw).stdout.decode().strip()


def run_hook(path: str | Path, args: Sequence[str], stdin: bytes) -> int:
    """Run a chained (pre-existing) hook with git's environment, streaming its output."""
    return subprocess.run([str(path), *args], input=stdin).returncode



def forked(func: Callable[[int], tuple[int, str]], *, user: int | None = None, group: int | None = None,
           keep_fds: Sequence[int] = ()) -> tuple[int, int, int]:
    """Run func(input fd) in a forked child, as user/group (no supplementary groups) when given.

    Forked, not executed: the child needs no interpreter or package files the account could
    read (the server's Python may live where that account cannot go). It keeps only keep_fds
    and its two pipes, and never returns into the caller's code: it exits with func's code
    after writing func's message. Returns (pid, fd to write its input, fd to read its message)."""
    in_r, in_w = os.pipe()
    msg_r, msg_w = os.pipe()
    top = os.sysconf("SC_OPEN_MAX")
    try:
        pid = os.fork()
    except OSError:
        for fd in (in_r, in_w, msg_r, msg_w):
            os.close(fd)
        raise
    if pid == 0:  # the child
        code = 2
        try:
            keep = sorted({in_r, msg_w, *keep_fds})
            low = 3
            for fd in keep:
                if fd >= low:
                    os.closerange(low, fd)
                    low = fd + 1
            os.closerange(low, max(top, low))
            if user is not None:
                os.setgroups([])
                os.setgid(group if group is not None else user)
                os.setuid(user)
            code, message = func(in_r)
            os.write(msg_w, message.encode(errors="replace")[:65536])
        except BaseException as exc:  # noqa: B902 - the child must exit here whatever happens
            try:
                os.write(msg_w, f"{type(exc).__name__}: {exc}".encode(errors="replace")[:65536])
            except BaseException:  # noqa: B902
                pass
        finally:
            os._exit(code)
    os.close(in_r)
    os.close(msg_w)
    return pid, in_w, msg_r


def wait_forked(pid: int, msg_fd: int) -> tuple[int, str]:
    """(exit code, message) of a child made by forked."""
    chunks = []
    while True:
        chunk = os.read(msg_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(msg_fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


async def start(args: Sequence[str], *, env: Mapping[str, str], user: int | None = None, cwd: str | Path | None = None):
    """An asyncio child with pipes on all three streams (the gateway streams git's CGI
    through it), as `user` (its own groups) when not ours."""
    import asyncio
    switch = as_account(user)
    return await asyncio.create_subprocess_exec(*args, env=dict(env), cwd=cwd, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                **switch)
