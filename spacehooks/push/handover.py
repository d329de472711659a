"""post-receive on the git account: the push record dropped into the spool, the server's
answer awaited, the build followed through the answers.

Every push runs this, so it imports only what that takes: no pygit2, no gate (the server
checks the record with those, in intake.py), no SQLite (the git account cannot read the store).
"""
from __future__ import annotations

import time
from pathlib import Path

from spacehooks import follow, spool
from spacehooks.output import Out

OPTIONS = ("rebuild", "wait")  # the push options the server acts on; others are dropped
INTAKE_WAIT = 10  # seconds a push waits for the server to take its record in
POLL = 0.02  # one open() each: the server takes a record in within a few of them (worker.RECORD_POLL)
NO_WORKER = ("no build worker is running: the build waits in the queue until "
             "`spacehooks worker` (or `spacehooks serve`) runs")


MAX_CONFIRMED = 64  # `-o secret-ok` fingerprints one record carries (each confirms one finding)


def record(space_id: str, repo: Path, commit: str, pusher: str, options: dict, secret_ok: list | None = None) -> dict:
    """secret_ok: the fingerprints the pusher confirmed as no secret; the server logs those
    its own scan of the push finds (secret-ok.log is the server's to write)."""
    rec = {"space": space_id, "repo": str(repo), "commit": commit, "pusher": pusher,
           "options": {k: v for k, v in options.items() if k in OPTIONS}}
    if secret_ok:
        rec["secret_ok"] = list(secret_ok)[:MAX_CONFIRMED]
    return rec


def post_receive(settings, rec: dict, out: Out) -> int:
    """Hand the push to the server and show what it made of it (the git account's way;
    intake.post_receive is the server's own account's)."""
    limit = None if "wait" in rec["options"] else settings["build.push_log_seconds"]
    try:
        name = spool.drop(settings.home, rec)
    except OSError as exc:
        out.alert(f"The push was stored, but the server could not be told: cannot write into "
                  f"{Path(settings.home) / spool.INCOMING} ({exc.strerror})")
        out.alert(f"the git account must be in the group {settings['home_group'] or '(home_group)'};"
                  f" then the next push is built (`spacehooks rebuild {rec['space']}` builds this one"
                  " if the server knows the Space)")
        return 0
    answer = _wait_for_answer(settings, name, rec, out)
    if answer is None or not queued(answer, rec, out):
        return 0
    build = answer["build"]

    def look() -> tuple[dict, dict]:
        nonlocal answer
        answer = spool.read_answer(settings.home, name) or answer
        return answer["build"], answer.get("space") or {}
    log_path = follow.build_log(settings.home, build["space_id"], build["id"])
    return follow.follow(look, log_path, out, limit, alive=lambda: spool.server_alive(settings.home))


def _wait_for_answer(settings, name: str, rec: dict, out: Out) -> dict | None:
    deadline = time.monotonic() + INTAKE_WAIT
    while True:
        answer = spool.read_answer(settings.home, name)
        if answer is not None:
            return answer
        if not spool.server_alive(settings.home):
            out.step(f"Push of {rec['space']} at {rec['commit'][:12]} recorded")
            out.alert("no build worker is running: the push is queued when "
                      "`spacehooks worker` (or `spacehooks serve`) runs")
            return None
        if time.monotonic() > deadline:
            out.step(f"Push of {rec['space']} at {rec['commit'][:12]} recorded; the server has not taken it in yet")
            out.detail(f"follow it with: spacehooks logs {rec['space']} --build --follow")
            return None
        time.sleep(POLL)


def queued(answer: dict, rec: dict, out: Out) -> bool:
    if answer["state"] == "refused":
        out.alert(f"The push was stored, but the server does not build it: {answer['error']}")
        return False
    out.step(f"Build #{answer['build']['id']} queued for {rec['space']} at {rec['commit'][:12]}"
             + (" (no cache)" if answer["no_cache"] else ""))
    return True
