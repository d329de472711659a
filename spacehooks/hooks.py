"""What the installed git hooks run: `githooks/*` exec `python -m spacehooks hook NAME`.

pre-receive fails closed: any internal error refuses the push with a log reference.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from spacehooks import config as config_mod
from spacehooks.hookenv import (CHAINED_SUFFIX, FINGERPRINT, SECRET_OK, push_options,  # noqa: F401
                                 pusher_identity, space_id_for)
from spacehooks.output import Out


def confirmed_fingerprints(env: dict) -> list[str]:
    """What the pusher confirmed as no secret: `git push -o secret-ok=FP[,FP…]`, repeatable
    (git hands each -o to the hooks as GIT_PUSH_OPTION_<n>; push_options keeps only the last)."""
    found: list[str] = []
    for i in range(int(env.get("GIT_PUSH_OPTION_COUNT", "0") or 0)):
        key, _, value = env.get(f"GIT_PUSH_OPTION_{i}", "").partition("=")
        if key == SECRET_OK:
            found += [v.strip().lower() for v in value.split(",") if v.strip() and v.strip().lower() not in found]
    return found


def _chained(repo_path: Path, name: str) -> Path | None:
    path = repo_path / "hooks" / (name + CHAINED_SUFFIX)
    return path if path.exists() and os.access(path, os.X_OK) else None


def run_hook(path: Path, args: list[str], stdin: bytes) -> int:
    from spacehooks import proc  # only with a chained hook: subprocess costs every push ~3 ms
    return proc.run_hook(path, args, stdin)


def pre_receive(args: list[str], stdin: bytes, out: Out) -> int:
    from spacehooks import gate
    from spacehooks.gitrepo import ZERO, Repo
    repo_path = Path.cwd()
    chained = _chained(repo_path, "pre-receive")
    if chained:
        code = run_hook(chained, args, stdin)
        if code != 0:
            return code
    settings = config_mod.load()
    space_id = space_id_for(repo_path, settings, dict(os.environ))
    updates = gate.parse_updates(stdin.decode(errors="replace"))
    repo = Repo.open_for_hook(repo_path)
    taken = None
    if any(u.ref == f"refs/heads/{settings['deploy_branch']}" and u.new != ZERO for u in updates):
        from spacehooks import addresses
        holder = addresses.taken_by(settings, space_id)
        taken = addresses.taken_message(settings, space_id, holder) if holder else None
    env = dict(os.environ)
    confirmed = frozenset(confirmed_fingerprints(env))
    return 0 if gate.check_push(settings, repo, updates, space_id, out, taken, confirmed, pusher_identity(env)) else 1


def post_receive(args: list[str], stdin: bytes, out: Out) -> int:
    # every push pays for what this imports: neither the gate nor pygit2 (the server checks
    # the record with them), nor the state store on the git account, which cannot read it
    repo_path = Path.cwd()
    chained = _chained(repo_path, "post-receive")
    if chained:
        run_hook(chained, args, stdin)
    from spacehooks import spool
    settings = spool.shared_settings()
    env = dict(os.environ)
    tips = deploy_tips(stdin, f"refs/heads/{settings['deploy_branch']}")
    if not tips:
        return 0
    from spacehooks import handover
    # the confirmations travel to the server, which checks them against its own scan and
    # writes the audit line (pre-receive, on the git account, cannot write the state folder)
    rec = handover.record(space_id_for(repo_path, settings, env), repo_path, tips[-1], pusher_identity(env),
                          push_options(env), [f for f in confirmed_fingerprints(env) if FINGERPRINT.fullmatch(f)])
    if spool.server_side(settings.home):
        from spacehooks import intake
        return intake.post_receive(settings, rec, out)
    return handover.post_receive(settings, rec, out)


def deploy_tips(stdin: bytes, ref: str) -> list[str]:
    """The commits `ref` was set to, from post-receive's input (`old new ref` lines; a new id
    of all zeros deletes the branch: no tip)."""
    tips = []
    for line in stdin.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == ref and parts[1].strip("0"):
            tips.append(parts[1])
    return tips


HOOKS = {"pre-receive": pre_receive, "post-receive": post_receive}
NOT_RECORDED = ("The push is stored, but its build could not be recorded ({reason}); "
                "the server queues it within a minute.")


def _not_recorded(exc: Exception, out: Out) -> int:
    """One line for the pusher, whatever failed (disk full, store locked or damaged): the ref is
    updated already, and the server's drift check (heal.py) queues the commit it missed."""
    errors = sys.modules.get("spacehooks.errors")
    if errors is not None and isinstance(exc, errors.SpaceError):
        reason = exc.message
    elif isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror.lower()
    else:
        reason = str(exc) or type(exc).__name__
    out.alert(NOT_RECORDED.format(reason=reason))
    try:  # the details for the administrator, when there is room for them
        from spacehooks.errors import report_bug
        report_bug(exc)
    except Exception:  # noqa: S110 - on a full disk there is nowhere to say more
        pass
    return 0


def run(name: str, args: list[str]) -> int:
    out = Out()
    stdin = sys.stdin.buffer.read()
    try:
        return HOOKS[name](args, stdin, out)
    except Exception as exc:  # fail closed, but never show a traceback to the pusher
        if name == "post-receive":
            return _not_recorded(exc, out)
        # SpaceError can only have been raised if its module was imported (it is imported
        # lazily so that a push does not pay for click)
        errors = sys.modules.get("spacehooks.errors")
        if errors is not None and isinstance(exc, errors.SpaceError):
            out.alert("Sorry, your push was rejected: " + exc.format_message())
            return 1
        from spacehooks.errors import report_bug
        log = report_bug(exc)
        out.alert("Sorry, your push was rejected: the Space checks failed with an internal error.")
        out.alert(f"Reference for the administrator: {log}")
        return 1

if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2:]))
