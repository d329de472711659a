"""Git and what runs never drift apart: each Space's deploy-branch tip against the commit it
serves or has queued, for a push whose post-receive could not record it (disk full, store
locked or damaged, hook killed).

`drift` decides over (repository, tip, state) only, whatever way push records arrive; the
worker runs `heal_all` at start and every HEAL_EVERY seconds. A tip is checked as the gate
would before it is queued: the git account can move a ref without pre-receive.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from spacehooks import gate, lfs
from spacehooks import queue as queue_mod
from spacehooks import stages
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError
from spacehooks.gitrepo import Repo
from spacehooks.hookenv import space_id_for

HEAL_EVERY = 30.0  # seconds between passes: a missed push is queued within a minute
SETTLE = 5.0  # a ref younger than this may still have its post-receive running
HOOK_MARKER = b"spacehooks-managed hook"
PUSHER = "spacehooks (push not recorded)"
log = logging.getLogger("spacehooks.heal")


def drift(tip: str | None, space: dict | None, builds: list[dict]) -> bool:
    """True when the tip is neither served nor recorded: no build of it and not deployed.

    A recorded tip that failed, was superseded or did not start is not tried again: the
    Space's stage already tells that, and a retry loop would hide it."""
    if tip is None or (space or {}).get("stage") in (stages.PAUSED, stages.DELETING):
        return False  # an admin's pause stands (a rebuilt store pauses what it cannot know)
    if space and space.get("commit") == tip:
        return False
    return all(b["commit"] != tip for b in builds)


def repositories(settings) -> dict[str, Path]:
    """Bare repositories under repo_root that carry spacehooks' hooks, by Space id."""
    found = {}
    for top, dirs, files in os.walk(settings["repo_root"]):
        folder = Path(top)
        if "HEAD" in files and "objects" in dirs:
            dirs[:] = []  # never walk into a repository's objects
            if folder.name != ".git" and _hooked(folder):
                try:
                    found[space_id_for(folder, settings, {})] = folder
                except SpaceError:
                    pass
        else:
            dirs.sort()
    return found


def _hooked(folder: Path) -> bool:
    for hook in (folder / "hooks" / "post-receive", *sorted((folder / "hooks" / "post-receive.d").glob("*"))):
        try:
            if HOOK_MARKER in hook.read_bytes()[:4096]:
                return True
        except OSError:
            continue
    return False


class Healer:
    def __init__(self, settings):
        self.settings = settings
        self._verdicts: dict[tuple[str, str], str] = {}  # (space, tip) refused by the checks
        self._last = 0.0

    def due(self) -> bool:
        return time.monotonic() - self._last >= HEAL_EVERY

    def run(self, st: state_mod.State) -> dict[str, str]:
        """One pass over every Space; returns what was done for those that drifted."""
        self._last = time.monotonic()
        ref = f"refs/heads/{self.settings['deploy_branch']}"
        known = {s["id"]: s for s in st.list_spaces()}
        repos = {s["id"]: Path(s["repo_path"]) for s in known.values()}
        for space_id, path in repositories(self.settings).items():
            repos.setdefault(space_id, path)
        done = {}
        for space_id, path in sorted(repos.items()):
            try:
                repo = Repo(path)
                tip = repo.resolve_ref(ref)
            except SpaceError:
                continue
            space = known.get(space_id)
            if not drift(tip, space, st.builds(space_id, limit=20)) or _young(path, ref):
                continue
            done[space_id] = self._heal(st, space_id, repo, tip, (space or {}).get("commit"))
            log.warning("heal %s: %s", space_id, done[space_id])
        return done

    def _heal(self, st, space_id: str, repo: Repo, tip: str, deployed: str | None) -> str:
        if (space_id, tip) in self._verdicts:
            return self._verdicts[(space_id, tip)]
        if deployed and repo.repo.get(deployed) is None:
            deployed = None  # history was rewritten: check everything the tip holds
        report = gate.check_tree(self.settings, gate.CommitSource(repo, tip, deployed), space_id)
        gate.check_secrets(self.settings, repo, tip, deployed or gate.ZERO, report, pushed=False)
        lfs.check_push(self.settings, repo, tip, deployed, report)
        st.ensure_space(space_id, repo.path, hardware=self.settings["run.default_hardware"])
        if report.errors:
            verdict = (f"commit {tip[:12]} on {self.settings['deploy_branch']} was not pushed through the checks"
                       f" and fails them: {report.errors[0]}")
            self._verdicts[(space_id, tip)] = verdict
            st.update_space(space_id, error=verdict)
            return verdict
        config, stage, error = queue_mod.read_config(repo.path, tip)
        if stage:
            stages.change(st, space_id, stage, "config error", error=error, config=config)
            self._verdicts[(space_id, tip)] = f"{stage}: {error}"
            return f"{stage}: {error}"
        build_id = queue_mod.enqueue(self.settings, st, space_id, repo.path, tip, PUSHER, config=config)
        return f"build #{build_id} queued for {tip[:12]}, a push that was not recorded"


def _young(repo: Path, ref: str) -> bool:
    try:
        return time.time() - (repo / ref).stat().st_mtime < SETTLE
    except OSError:
        return False  # a packed ref is not fresh
