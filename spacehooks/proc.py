"""The one place that runs other programs (git included): argument lists, never shell strings."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping, Sequence


# git exports these to hooks; a child git that inherits them operates on the wrong repo.
GIT_ENV_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH", "GIT_PREFIX")


def clean_env(extra: Mapping[str, str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in GIT_ENV_VARS}
    if extra:
        env.update(extra)
    return env


def run(args: Sequence[str], *, cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
        input: bytes | None = None, timeout: float | None = None, check: bool = True,
        capture: bool = True) -> subprocess.CompletedProcess:
    from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
    try:
        result = subprocess.run(list(args), cwd=cwd, env=env, input=input, timeout=timeout,
                                stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError as exc:
        raise SpaceError(f"{args[0]}: command not found", hint=f"install {args[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise SpaceError(f"{' '.join(map(str, args[:3]))}: timed out after {timeout}s") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or b"").decode(errors="replace").strip()
        raise SpaceError(f"{' '.join(map(str, args[:3]))} failed (exit {result.returncode})"
                         + (f": {detail}" if detail else ""))
    return result


def git(args: Sequence[str], git_dir: str | Path | None = None, **kw) -> str:
    base = ["git"] + (["--git-dir", str(git_dir)] if git_dir else [])
    return run(base + list(args), env=kw.pop("env", clean_env()), **kw).stdout.decode().strip()


def run_hook(path: str | Path, args: Sequence[str], stdin: bytes) -> int:
    """Run a chained (pre-existing) hook with git's environment, streaming its output."""
    return subprocess.run([str(path), *args], input=stdin).returncode
