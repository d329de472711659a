"""Push records in: the server checks each one before anything is queued, and a post-receive
takes them in on the server's own account.

A record only says "this repository's deploy branch now holds this commit"; the server
believes none of it until it has seen it: the repository is under `repo_root`, the commit
is on its deploy branch, the Space is not built from another repository, and the commit
passes the gate's checks of README and files again. A record that fails is logged and
answered, never acted on.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from spacehooks import spool
from spacehooks.push import addresses, gate, handover, secretscan
from spacehooks.queue import jobs as queue
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError, report_bug
from spacehooks.git.repo import Repo
from spacehooks.output import Out

SPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
FINGERPRINT = re.compile(r"[0-9a-f]{12}")
log = logging.getLogger("spacehooks.intake")


def take_in(settings, st: state_mod.State, rec: dict) -> dict:
    """Check a push record and queue its build; returns the answer for the push:
    `{"state": "queued", "build": {...}}` or `{"state": "refused", "error": why}`. Also the
    way for a periodic check to queue a commit it found (same checks, same answer)."""
    try:
        space_id, repo_path, commit, pusher, options = _fields(rec)
        repo = _repository(settings, repo_path)
        branch = settings["deploy_branch"]
        if not repo.on_branch(f"refs/heads/{branch}", commit):
            raise SpaceError(f"commit {commit[:12]} is not on branch {branch} of {repo.path}")
        space = st.get_space(space_id)
        _same_repository(space, space_id, repo.path)
        if space is None:
            # pre-receive checked this too, but as the git account it cannot read the store
            holder = addresses.taken_by(settings, space_id)
            if holder:
                raise SpaceError(addresses.taken_message(settings, space_id, holder))
        config = _checked_config(settings, repo, commit, space, space_id)
        _record_confirmations(settings, repo, commit, space, space_id, pusher, rec.get("secret_ok"))
    except SpaceError as exc:
        return {"state": "refused", "error": exc.format_message()}
    no_cache = "rebuild" in options
    latest = st.builds(space_id, limit=1)
    if latest and latest[0]["commit"] == commit and latest[0]["no_cache"] == no_cache \
            and latest[0]["status"] in (state_mod.QUEUED, state_mod.RUNNING):
        build_id = latest[0]["id"]  # the same record again: one build is enough
    else:
        build_id = queue.enqueue(settings, st, space_id, repo.path, commit, pusher, no_cache=no_cache, config=config)
        # the audit log has pushes beside API changes: the git server names the pusher (an SSH
        # key's user, a forge account)
        st.audit_add(pusher, "git", "push", space_id, f"{commit[:12]} build #{build_id}")
    return {"state": "queued", "no_cache": no_cache, "build": _build_view(st.get_build(build_id))}


def _fields(rec: dict) -> tuple[str, str, str, str, dict]:
    if not isinstance(rec, dict) or set(rec) - {"secret_ok"} != {"space", "repo", "commit", "pusher", "options"}:
        # secret_ok is optional: records of an older post-receive lack it
        raise SpaceError("not a push record: it must have exactly space, repo, commit, pusher and options")
    confirmed = rec.get("secret_ok", [])
    if not (isinstance(confirmed, list) and len(confirmed) <= handover.MAX_CONFIRMED
            and all(isinstance(f, str) and FINGERPRINT.fullmatch(f) for f in confirmed)):
        raise SpaceError(f"secret_ok must list at most {handover.MAX_CONFIRMED} fingerprints of 12 hex digits")
    space_id, repo, commit, pusher, options = (rec[k] for k in ("space", "repo", "commit", "pusher", "options"))
    if not (isinstance(space_id, str) and SPACE_ID.fullmatch(space_id)):
        raise SpaceError(f"not a Space id: {space_id!r}")
    if not (isinstance(repo, str) and repo.startswith("/") and "\0" not in repo and len(repo) < 4096):
        raise SpaceError(f"not an absolute path: {repo!r}"[:300])
    if not (isinstance(commit, str) and COMMIT.fullmatch(commit)):
        raise SpaceError(f"not a commit id: {commit!r}"[:300])
    if not (isinstance(pusher, str) and len(pusher) <= 256 and pusher.isprintable()):
        raise SpaceError(f"not a pusher name: {pusher!r}"[:300])
    if not (isinstance(options, dict) and all(isinstance(k, str) and isinstance(v, str) and len(v) <= 256
                                              for k, v in options.items())):
        raise SpaceError("push options must map names to strings")
    return space_id, repo, commit, pusher, {k: v for k, v in options.items() if k in handover.OPTIONS}


def _repository(settings, repo_path: str) -> Repo:
    """The repository, by its real path (links resolved), which must lie below repo_root."""
    root = Path(os.path.realpath(settings["repo_root"]))
    real = Path(os.path.realpath(repo_path))
    if real == root or not real.is_relative_to(root):
        raise SpaceError(f"{repo_path} is not a repository under repo_root {root}")
    if not real.is_dir():
        raise SpaceError(f"{repo_path} does not exist")
    return Repo(real)


def _same_repository(space: dict | None, space_id: str, real: Path) -> None:
    """A Space stays with its repository while that one exists (a moved repository takes over)."""
    if not space or not space.get("repo_path"):
        return
    known = Path(os.path.realpath(space["repo_path"]))
    if known != real and known.is_dir():
        raise SpaceError(f"{space_id} is built from {space['repo_path']}, not from {real}")


def _checked_config(settings, repo: Repo, commit: str, space: dict | None, space_id: str) -> dict:
    """The gate's own checks of README and files; files unchanged since the deployed commit
    are not checked again, as at push time."""
    base = space.get("commit") if space else None
    if base and not repo.on_branch(f"refs/heads/{settings['deploy_branch']}", base):
        base = None
    report = gate.check_tree(settings, gate.CommitSource(repo, commit, base), space_id)
    if report.errors or report.config is None:
        problems = "; ".join(str(p) for p in report.errors[:5])
        raise SpaceError(f"commit {commit[:12]} does not pass the checks: {problems}")
    return report.config.values


def _record_confirmations(settings, repo: Repo, commit: str, space: dict | None, space_id: str, pusher: str,
                          confirmed: list | None) -> None:
    """The audit line of each `-o secret-ok` confirmation, in secret-ok.log (the server's: the
    git account's pre-receive cannot write the state folder). The record only names
    fingerprints: what is logged is what the server's own scan of the commits since the
    deployed one finds under them, so a forged record can log no finding the branch lacks.
    A confirmation that cannot be logged is not accepted: the push is not built."""
    if not confirmed:
        return
    base = space.get("commit") if space else None
    if not base or not repo.on_branch(f"refs/heads/{settings['deploy_branch']}", base):
        base = gate.ZERO
    scratch = gate.Report(space_id)  # findings left unconfirmed were the gate's to refuse
    accepted = gate.check_secrets(settings, repo, commit, base, scratch, pushed=False,
                                  confirmed=frozenset(confirmed), pusher=pusher)
    try:
        secretscan.record(settings.home, space_id, pusher, accepted)
    except OSError as exc:
        raise SpaceError(f"{secretscan.CONFIRM_OPTION} could not be recorded in {settings.home}/secret-ok.log "
                         f"({exc.strerror}); ask the administrator") from None


def _build_view(build: dict) -> dict:
    return {k: build[k] for k in ("id", "space_id", "commit", "status", "error")}


# --- the server's loop: records in, answers out --------------------------------------------
def take_all(settings, st: state_mod.State) -> int:
    """Take in every record waiting in the spool; returns how many there were."""
    count = 0
    for rec in spool.take(settings.home):
        count += 1
        who = f"push record {rec.name} (uid {rec.uid})"
        if rec.problem:
            answer = {"state": "refused", "error": f"the record {rec.problem}"}
        else:
            try:
                answer = take_in(settings, st, rec.data)
            except Exception as exc:  # a damaged repository, say: the next records still count
                answer = {"state": "refused", "error": f"internal error, see {report_bug(exc)}"}
        if answer["state"] == "refused":
            log.warning("%s refused: %s", who, answer["error"])
        else:
            log.info("%s: build #%s queued for %s", who, answer["build"]["id"], answer["build"]["space_id"])
        spool.answer(settings.home, rec.name, answer)
    return count


def publish(settings, st: state_mod.State) -> None:
    """Bring the answers of pushes whose build was queued up to date (status, then the end)."""
    for name, answer in spool.answers(settings.home):
        if answer.get("state") != "queued":
            continue
        build = st.get_build(answer["build"]["id"])
        if build is None:  # the Space was deleted meanwhile
            spool.answer(settings.home, name, {**answer, "state": "done", "space": {},
                                               "build": {**answer["build"], "status": state_mod.CANCELLED}})
        elif build["status"] in state_mod.FINAL:
            space = st.get_space(build["space_id"]) or {}
            spool.answer(settings.home, name, {**answer, "state": "done", "build": _build_view(build),
                                               "space": {k: space.get(k) for k in ("id", "stage", "build_id", "error")}})
        elif build["status"] != answer["build"]["status"]:
            spool.answer(settings.home, name, {**answer, "build": _build_view(build)})


# --- post-receive on the server's own account ---------------------------------------------
def post_receive(settings, rec: dict, out: Out) -> int:
    """A git server running as the server's account (root, or a one-account set-up) checks
    and queues the push itself; the git account hands it over instead (handover.py)."""
    limit = None if "wait" in rec["options"] else settings["build.push_log_seconds"]
    st = state_mod.open(settings)
    try:
        answer = take_in(settings, st, rec)
        if not handover.queued(answer, rec, out):
            return 0
        if not st.worker_alive():
            out.alert(handover.NO_WORKER)
            return 0
        return queue.follow_build(st, answer["build"]["id"], out, limit)
    finally:
        st.close()
