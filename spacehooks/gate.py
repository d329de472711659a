"""The pre-receive gate: every check a push to the deploy branch must pass.

Checks read through a `Source` (the pushed commit, or a working copy for `validate`),
so both paths run the very same rules.
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from spacehooks import lfs, pyversions, secretscan, spaceconfig, treewriter
from spacehooks.config import Settings
from spacehooks.gatesources import CommitSource, DirSource  # noqa: F401 - the gate's interface
from spacehooks.gitrepo import ZERO, Repo
from spacehooks.output import Out
from spacehooks.spaceconfig import Problem

DEP_FILES = ("pre-requirements.txt", "requirements.txt")
REJECTED = "Sorry, your push was rejected during Space verification:"


class Report:
    def __init__(self, space_id: str):
        self.space_id = space_id
        self.errors: list = []
        self.warnings: list = []
        self.config: spaceconfig.SpaceConfig | None = None
        self.readme = "README.md"


def _read_limited(settings: Settings, source, path: str, report: Report) -> bytes | None:
    limit = settings["max_file_bytes"]
    if source.size(path) > limit:
        report.errors.append(Problem(path, None, f"is {source.size(path)} bytes; at most {limit} bytes are allowed"))
        return None
    return source.read(path)


def check_tree(settings: Settings, source, space_id: str) -> Report:
    report = Report(space_id)
    # as on the Hub: README.md, else a case variant such as readme.md
    readme = report.readme = spaceconfig.readme_name(source.names()) or "README.md"
    kind = source.kind(readme)
    if kind is None:
        report.errors.append(Problem(readme, None, 'is missing: a Space needs a README.md that starts with a YAML block setting at least "sdk"'))
        return report
    if kind != "blob":
        report.errors.append(Problem(readme, None, "must be a regular file (found a symlink or folder)"))
        return report
    data = _read_limited(settings, source, readme, report)
    if data is None:
        return report
    cfg = spaceconfig.parse(data, readme)
    report.config = cfg
    report.errors += cfg.errors
    report.warnings += cfg.warnings
    _check_capabilities(settings, cfg, report)
    _check_app_file(source, cfg, report)
    _check_dockerfile_mounts(settings, source, cfg, report)
    report.errors.sort(key=lambda p: (p.file != readme, p.file, p.line or 0))
    _check_dependency_files(settings, source, cfg, report)
    return report


def _check_capabilities(settings: Settings, cfg, report: Report) -> None:
    version = cfg.get("python_version")
    if not version or cfg.sdk not in ("gradio", "streamlit"):
        return  # docker Spaces pick their own Python in the Dockerfile; static ones run none
    versions = settings["python_versions"]
    choice = pyversions.choose(versions, version)
    if choice is not None and choice.exact:
        return
    line = cfg.line_of("python_version")
    if choice is not None and pyversions.policy(settings) == "nearest":
        report.warnings.append(Problem(report.readme, line, pyversions.fallback_message(choice), "python_version"))
    else:
        report.errors.append(Problem(report.readme, line, pyversions.refused_message(versions, version), "python_version"))


def _check_app_file(source, cfg, report: Report) -> None:
    sdk = cfg.sdk
    if sdk == "docker":
        if source.kind("Dockerfile") != "blob":
            report.errors.append(Problem("Dockerfile", None, "is missing: sdk docker builds the repository's own Dockerfile; add one at the root"))
        return
    if sdk not in ("gradio", "streamlit", "static") or cfg.app_file is None:
        return
    if spaceconfig.is_static(cfg.values) and cfg.get("app_build_command"):
        return  # app_file is in what the command builds (staticbuild.py), not in the commit
    app_file = cfg.app_file
    line = cfg.line_of("app_file")
    where = f'"app_file" {app_file}' if line else f'"app_file" (default {app_file} for sdk {sdk})'
    kind = source.kind(app_file)
    if kind == "link":
        resolved, problem = source.resolve(app_file)
        if problem:
            report.errors.append(Problem(report.readme, line, f"{where} {problem}", "app_file"))
            return
        kind = source.kind(resolved)
    if kind is None:
        fix = "add it or set app_file to the main file" if line is None else "add the file or fix the path"
        report.errors.append(Problem(report.readme, line, f"{where} does not exist in the repository; {fix}", "app_file"))
    elif kind != "blob":
        report.errors.append(Problem(report.readme, line, f"{where} is a folder; it must be a file", "app_file"))


def _check_dockerfile_mounts(settings: Settings, source, cfg, report: Report) -> None:
    """The build refuses cache mounts it cannot give the Space's own id: say so at push."""
    if cfg.sdk != "docker" or source.kind("Dockerfile") != "blob":
        return
    data = _read_limited(settings, source, "Dockerfile", report)
    from spacehooks import buildmounts  # here (and depfiles below), not at the top: most pushes change neither
    try:
        buildmounts.confine_dockerfile(report.space_id, (data or b"").decode(errors="replace"))
    except buildmounts.Refused as exc:
        report.errors.append(Problem("Dockerfile", exc.line, f"{exc.reason} ({buildmounts.HINT})"))


def _check_dependency_files(settings: Settings, source, cfg, report: Report) -> None:
    if cfg.sdk in ("docker", "static"):
        return  # the Dockerfile decides; static Spaces install nothing

    def exists(path: str) -> bool:
        return source.kind(path) == "blob"

    if source.kind("packages.txt") == "blob" and not source.unchanged("packages.txt"):
        data = _read_limited(settings, source, "packages.txt", report)
        if data is not None:
            from spacehooks import depfiles
            report.errors += depfiles.check_packages(data)
    for name in DEP_FILES:
        if source.kind(name) == "blob" and not source.unchanged(name):
            data = _read_limited(settings, source, name, report)
            if data is not None:
                from spacehooks import depfiles
                report.errors += depfiles.check_requirements(data, name, exists)


def check_secrets(settings: Settings, repo: Repo, new: str, old: str, report: Report,
                  pushed: bool = True, confirmed: frozenset = frozenset(), pusher: str = "") -> list:
    """Findings refused, or noted when the pusher confirmed them (`-o secret-ok=FP`); returns
    the confirmed ones, for the record. pushed=False (a ref found moved, not a push in
    quarantine): every commit since old counts, even those other refs already hold."""
    if not settings["secret_scan.enabled"]:
        return []
    commits = repo.new_commits(new, exclude_existing_refs=pushed, old=old)
    findings = secretscan.scan_commits(repo, commits, settings["secret_scan.allow_paths"])
    accepted = [f for f in findings if f.fingerprint in confirmed]
    report.errors += secretscan.as_problems([f for f in findings if f.fingerprint not in confirmed], report.space_id)
    report.warnings += secretscan.accepted_notes(accepted, pusher)
    return accepted


def check_tree_names(repo: Repo, new: str, old: str, report: Report) -> None:
    """Every tree of the pushed commit and of every commit the push brings: names that would
    leave a folder (`..`, `/`), be git's own (`.git`), or come twice are refused. Trees seen
    once are not read again, so a push of many commits reads each distinct tree once."""
    seen: set = set()
    problems = []
    # the tip first: it may be a commit the repository had already (on an unchecked branch)
    commits = [repo.commit(new)] + [c for c in repo.new_commits(new, old=old) if str(c.id) != new]
    for commit in commits:
        for folder, items in repo.walk(str(commit.id), seen):
            names: set = set()
            for item in items:
                problem = treewriter.name_problem(item.name)
                if problem is None and item.name in names:
                    problem = "two tree entries have this name"
                names.add(item.name)
                if problem:
                    problems.append(Problem(treewriter.shown(folder + (item.name,)), None,
                                            f"{problem} (commit {str(commit.id)[:7]})"))
    report.errors[:0] = problems


class RefUpdate(NamedTuple):
    old: str
    new: str
    ref: str


def parse_updates(stdin_text: str) -> list[RefUpdate]:
    updates = []
    for line in stdin_text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append(RefUpdate(*parts))
    return updates


def check_push(settings: Settings, repo: Repo, updates: list[RefUpdate], space_id: str, out: Out,
               address_taken: str | None = None, confirmed: frozenset = frozenset(), pusher: str = "") -> bool:
    """Check every ref update of a push; print the verdict; True when the push may land.
    address_taken: why the Space may not have its address (another one holds it), if so."""
    deploy_ref = f"refs/heads/{settings['deploy_branch']}"
    ok = True
    accepted: dict = {}
    for update in updates:
        if update.ref != deploy_ref and not settings["check_other_refs"]:
            continue
        if update.new == ZERO:
            if update.ref == deploy_ref:
                out.alert(f"Sorry, your push was rejected: deleting {update.ref} would take {space_id} down.")
                out.alert(f"To remove the Space, an administrator runs: spacehooks delete {space_id}")
                ok = False
            continue
        out.step(f"Checking {space_id} ({update.ref.removeprefix('refs/heads/')} {update.new[:7]})")
        report = check_tree(settings, CommitSource(repo, update.new, update.old), space_id)
        check_tree_names(repo, update.new, update.old, report)
        lfs.check_push(settings, repo, update.new, update.old, report)
        if address_taken and update.ref == deploy_ref:
            report.errors.insert(0, address_taken)
        for finding in check_secrets(settings, repo, update.new, update.old, report,
                                     confirmed=confirmed, pusher=pusher):
            accepted[finding.fingerprint] = finding
        ok = print_report(out, report) and ok
    for unused in sorted(confirmed - set(accepted)):
        # the value comes from the pusher: echoed only when it has a fingerprint's shape
        shown = unused if secretscan.FINGERPRINT.fullmatch(unused) else "(not 12 hex digits)"
        out.warn(f"{secretscan.CONFIRM_OPTION}={shown} matches no finding of this push; it confirmed nothing")
    return ok


def print_report(out: Out, report: Report) -> bool:
    for warning in report.warnings:
        out.warn(str(warning))
    if report.errors:
        out.alert(REJECTED)
        for problem in report.errors:
            out.alert(str(problem))
        return False
    cfg = report.config
    if cfg is not None:
        out.detail(f"sdk {cfg.sdk}" + (f" {cfg.get('sdk_version')}" if cfg.get("sdk_version") else "")
                   + (f", app {cfg.app_file}" if cfg.app_file else "") + ": all checks passed")
    return True


def validate_directory(settings: Settings, directory: Path, out: Out | None = None) -> bool:
    out = out or Out()
    directory = directory.resolve()
    out.step(f"Checking {directory}")
    report = check_tree(settings, DirSource(directory), directory.name)
    if settings["secret_scan.enabled"]:
        for path in _working_files(directory):
            rel = str(PurePosixPath(path.relative_to(directory)))
            if any(fnmatch.fnmatch(rel, p) for p in settings["secret_scan.allow_paths"]):
                continue
            try:
                if path.stat().st_size > secretscan.MAX_BLOB:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if b"\x00" in data[:8000]:
                continue
            report.errors += secretscan.as_problems(list(secretscan.scan_blob(data, path=rel)), "OWNER/NAME")
    return print_report(out, report)


def _working_files(root: Path):
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                yield path
