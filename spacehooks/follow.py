"""What a push shows of its build: a build's statuses, its log's new lines while it runs,
how it ended. post-receive follows with the store's rows on the server's account and with
the server's answers (spool.py) on the git account, which imports this module, not the store's.
"""
from __future__ import annotations

import time
from pathlib import Path

from spacehooks import stages
from spacehooks.output import Out

# Build statuses (the store's builds.status; the state package takes them from here); the last four are final.
QUEUED, RUNNING, SUCCEEDED, FAILED, SUPERSEDED, CANCELLED = (
    "queued", "running", "succeeded", "failed", "superseded", "cancelled")
FINAL = (SUCCEEDED, FAILED, SUPERSEDED, CANCELLED)
END_OF_LOG_POLL = 0.3


def build_log(home: str | Path, space_id: str, build_id: int) -> Path:
    return Path(home) / "logs" / "builds" / space_id / f"{build_id}.log"


def follow(look, path: Path, out: Out, seconds: float | None, alive=lambda: True) -> int:
    """Stream the log at `path` while look() gives (build, space) of an unfinished build."""
    deadline = None if seconds is None else time.monotonic() + seconds
    offset = 0
    while True:
        offset = _print_new_lines(path, offset, out)
        build, space = look()
        if build["status"] in FINAL:
            _print_new_lines(path, offset, out)
            return _report(build, space, out)
        if _past(deadline) or not alive():
            out.step(f"Build #{build['id']} continues in the background ({build['status']})")
            out.detail(f"follow it with: spacehooks logs {build['space_id']} --build --follow"
                       " (or push with -o wait)")
            return 0
        time.sleep(END_OF_LOG_POLL)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _print_new_lines(path: Path, offset: int, out: Out) -> int:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return offset
    end = data.rfind(b"\n") + 1
    for line in data[:end].decode(errors="replace").splitlines():
        out.detail(line)
    return offset + end


def _report(build: dict, space: dict, out: Out) -> int:
    if build["status"] == SUCCEEDED:
        if space.get("build_id") == build["id"] and space.get("stage") == stages.RUNNING:
            out.step(f"Build #{build['id']} deployed: {space['id']} is RUNNING")
        else:
            out.alert(f"Build #{build['id']} built, but the app did not start: {space.get('stage')}")
            if space.get("error"):
                out.alert(space["error"])
        return 0
    if build["status"] == SUPERSEDED:
        out.step(f"Build #{build['id']} was superseded by a newer push")
        return 0
    out.alert(f"Build #{build['id']} failed: {build.get('error') or build['status']}")
    return 0
