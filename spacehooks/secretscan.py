"""Hard-coded secrets in the lines a push adds (every new commit, not just the tip:
a token added and removed again would still be in the history)."""
from __future__ import annotations

import fnmatch
import re
from typing import Iterable, Iterator, NamedTuple

import pygit2

from spacehooks.spaceconfig import Problem

PATTERNS = [  # (what it is, regex source); order matters: the first alternative wins
    ("a Hugging Face token", r"\bhf_[A-Za-z0-9]{30,40}\b"),
    ("an Anthropic API key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    ("an OpenAI-style API key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    ("an AWS access key id", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
    ("an AWS secret access key", r"(?i:aws_secret_access_key)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{40}\b"),
    ("a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})\b"),
    ("a private key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    ("a Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
]
MAX_BLOB = 2 * 1024 * 1024


class Finding(NamedTuple):
    path: str
    line: int
    kind: str
    sample: str


def _redact(text: str) -> str:
    return text[:6] + "…" if len(text) > 8 else "…"


# One alternation, compiled once, scanned in one C-speed pass over whole blobs; lines are
# counted only where something matched.
_COMBINED = re.compile(b"|".join(b"(?P<p%d>%s)" % (i, rx.encode()) for i, (_, rx) in enumerate(PATTERNS)))


def scan_blob(new: bytes, old: bytes = b"") -> Iterator[tuple[int, str, str]]:
    """(line, kind, sample) for each secret in new that old did not already hold."""
    reported_lines = set()
    for match in _COMBINED.finditer(new):
        token = match.group(0)
        if old and token in old:
            continue
        line = new.count(b"\n", 0, match.start()) + 1
        if line in reported_lines:
            continue
        reported_lines.add(line)
        kind = PATTERNS[int(match.lastgroup[1:])][0]
        yield line, kind, _redact(token.decode(errors="replace"))


def scan_commits(repo: pygit2.Repository, commits: Iterable[pygit2.Commit], allow: list[str],
                 max_files: int = 50000) -> list[Finding]:
    findings: list[Finding] = []
    seen: set = set()
    files = 0
    for commit in commits:
        parent_tree = commit.parents[0].tree if commit.parents else None
        diff = (repo.diff(parent_tree, commit.tree) if parent_tree is not None
                else commit.tree.diff_to_tree(swap=True))
        for delta in diff.deltas:
            if delta.status_char() not in "AMRC" or delta.new_file.mode == pygit2.enums.FileMode.COMMIT:
                continue
            path = delta.new_file.path
            files += 1
            if files > max_files:
                return findings
            if any(fnmatch.fnmatch(path, pattern) for pattern in allow):
                continue
            blob = repo[delta.new_file.id]
            if blob.size > MAX_BLOB or blob.is_binary:
                continue
            old = b""
            if delta.status_char() != "A" and not delta.old_file.id == pygit2.Oid(hex="0" * 40):
                old = repo[delta.old_file.id].data
            for line, kind, sample in scan_blob(blob.data, old):
                key = (path, line, kind)
                if key not in seen:
                    seen.add(key)
                    findings.append(Finding(path, line, kind, sample))
    return findings


def as_problems(findings: list[Finding], space_id: str) -> list[Problem]:
    return [Problem(f.path, f.line,
                    f"looks like {f.kind} ({f.sample}); remove it from every commit of the push "
                    f"and store it on the server instead: spacehooks secrets set {space_id} NAME")
            for f in findings]
