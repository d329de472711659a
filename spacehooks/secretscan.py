"""Hard-coded secrets in the lines a push adds (every new commit, not just the tip:
a token added and removed again would still be in the history)."""
from __future__ import annotations

import fnmatch
import re
from typing import Iterable, Iterator, NamedTuple

from spacehooks import secretshapes
from spacehooks.spaceconfig import Problem

MAX_BLOB = 2 * 1024 * 1024
CONFIRM_OPTION = "secret-ok"
FINGERPRINT = re.compile(r"[0-9a-f]{12}")


class Finding(NamedTuple):
    path: str
    line: int
    kind: str
    sample: str
    fingerprint: str


def _redact(text: str) -> str:
    return text[:6] + "…" if len(text) > 8 else "…"


def fingerprint(path: str, token: bytes) -> str:
    """Names one finding (this match in this file) without telling the secret."""
    import hashlib  # here: OpenSSL's load costs every push milliseconds, and few have findings
    return hashlib.sha256(path.encode(errors="replace") + b"\0" + token).hexdigest()[:12]


# One alternation, compiled once, scanned in one C-speed pass over whole blobs; the shape
# checks and line counting run only where something matched. The lookahead names every
# pattern's first character: re tries the alternatives only there (twice as fast on text).
FIRST_CHARACTERS = b"hsAagx-"
_COMBINED = re.compile(b"(?=[" + FIRST_CHARACTERS + b"])(?:" + b"|".join(
    b"(?P<p%d>%s)" % (i, rx.replace("(?P<body>", f"(?P<b{i}>").encode())
    for i, (_, rx, _) in enumerate(secretshapes.PATTERNS)) + b")")


def scan_blob(new: bytes, old: bytes = b"", path: str = "") -> Iterator[Finding]:
    """Each real-looking secret in new that old did not already hold, one per line."""
    reported_lines = set()
    for match in _COMBINED.finditer(new):
        token = match.group(0)
        if old and token in old:
            continue
        index = int(match.lastgroup[1:])
        kind, _, check = secretshapes.PATTERNS[index]
        body = match.group(f"b{index}").decode(errors="replace")
        if secretshapes.why_not_a_key(body, check) is not None:
            continue
        line = new.count(b"\n", 0, match.start()) + 1
        if line in reported_lines:
            continue
        reported_lines.add(line)
        yield Finding(path, line, kind, _redact(token.decode(errors="replace")), fingerprint(path, token))


def scan_commits(repo, commits: Iterable, allow: list[str], max_files: int = 50000) -> list[Finding]:
    """repo: a gitrepo.Repo; commits: what its new_commits() yields."""
    findings: list[Finding] = []
    seen: set = set()
    files = 0
    for commit in commits:
        for change in repo.changes(commit):
            path = change.path
            files += 1
            if files > max_files:
                return findings
            if any(fnmatch.fnmatch(path, pattern) for pattern in allow):
                continue
            data = repo.text_blob(change.new, MAX_BLOB)
            if data is None:
                continue
            old = repo.blob_data(change.old) if change.old else b""
            for finding in scan_blob(data, old, path):
                # the same match in several commits of the push is one finding
                if finding.fingerprint not in seen:
                    seen.add(finding.fingerprint)
                    findings.append(finding)
    return findings


def as_problems(findings: list[Finding], space_id: str) -> list[Problem]:
    return [Problem(f.path, f.line,
                    f"looks like {f.kind} ({f.sample}); remove it from every commit of the push "
                    f"and store it on the server instead: spacehooks secrets set {space_id} NAME; "
                    f"if it is no secret, confirm this one finding: git push -o {CONFIRM_OPTION}={f.fingerprint}")
            for f in findings]


def accepted_notes(findings: list[Finding], pusher: str) -> list[Problem]:
    return [Problem(f.path, f.line, f"{f.kind} ({f.sample}) accepted as no secret: "
                                    f"{CONFIRM_OPTION}={f.fingerprint} given by {pusher}")
            for f in findings]


def record(home, space_id: str, pusher: str, findings: list[Finding]) -> None:
    """One JSON line per confirmed finding in SPACEHOOKS_HOME/secret-ok.log (never the secret).
    The server writes it (intake.py), from the confirmations the push record carries and its
    own scan of the commit: the git account cannot write the state folder, nor this log."""
    if not findings:
        return
    import json
    import os
    import time
    lines = "".join(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "space": space_id,
                                "pusher": pusher, "fingerprint": f.fingerprint, "path": f.path, "line": f.line,
                                "kind": f.kind}) + "\n" for f in findings)
    fd = os.open(os.path.join(home, "secret-ok.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
    try:
        os.write(fd, lines.encode())
    finally:
        os.close(fd)
