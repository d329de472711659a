"""Read-only pygit2 access to a bare repository, aware of git's push quarantine.

During pre-receive the pushed objects live in a quarantine directory that a plain
`pygit2.Repository(path)` does not see; `Repo.open_for_hook` adds it as an alternate.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath
from typing import Iterator, NamedTuple

import pygit2

# The server (root) reads repositories that belong to the git account; libgit2 refuses those
# unless ownership checks are off. Safe here: we only read objects, never the repo's config
# hooks or filters, and never check out.
pygit2.settings.owner_validation = False


ZERO = "0" * 40


class Entry(NamedTuple):
    path: str
    kind: str        # "blob", "tree", "link", "commit" (submodule)
    size: int
    oid: str


class Repo:
    def __init__(self, path: str | os.PathLike, quarantine: str | None = None):
        self.path = Path(path)
        try:
            self.repo = pygit2.Repository(str(path))
        except pygit2.GitError as exc:
            from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
            raise SpaceError(f"{path}: not a git repository ({exc})") from exc
        if quarantine:
            self.repo.odb.add_disk_alternate(quarantine)
        self._trees: dict[str, pygit2.Tree] = {}  # the gate asks for many paths of one commit

    @classmethod
    def open_for_hook(cls, path: str | os.PathLike = ".") -> "Repo":
        quarantine = os.environ.get("GIT_QUARANTINE_PATH") or None
        return cls(path, quarantine)

    def commit(self, rev: str) -> pygit2.Commit:
        obj = self.repo.get(rev) if len(rev) == 40 else self.repo.revparse_single(rev)
        if obj is None:
            from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
            raise SpaceError(f"commit {rev[:12]} not found in {self.path}")
        return obj.peel(pygit2.Commit)

    def _tree(self, rev: str) -> pygit2.Tree:
        tree = self._trees.get(rev)
        if tree is None:
            tree = self.commit(rev).tree
            if len(rev) == 40:  # a commit id never changes; a branch name may
                self._trees[rev] = tree
        return tree

    def entry(self, rev: str, path: str) -> Entry | None:
        tree = self._tree(rev)
        try:
            obj = tree[path]
        except KeyError:
            return None
        if obj.filemode == pygit2.enums.FileMode.LINK:
            kind = "link"
        elif obj.filemode == pygit2.enums.FileMode.COMMIT:
            return Entry(path, "commit", 0, str(obj.id))
        else:
            kind = "tree" if obj.type_str == "tree" else "blob"
        size = obj.size if kind != "tree" else 0
        return Entry(path, kind, size, str(obj.id))

    def root_names(self, rev: str) -> list[str]:
        return [obj.name for obj in self._tree(rev)]

    def read_blob(self, rev: str, path: str, max_bytes: int | None = None) -> bytes | None:
        """Blob content at path, or None when absent or not a file; symlinks are not followed."""
        entry = self.entry(rev, path)
        if entry is None or entry.kind != "blob":
            return None
        if max_bytes is not None and entry.size > max_bytes:
            from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
            raise SpaceError(f"{path}: {entry.size} bytes is larger than the {max_bytes} bytes allowed")
        return self.repo[entry.oid].data

    def link_target(self, rev: str, path: str) -> str | None:
        entry = self.entry(rev, path)
        if entry is None or entry.kind != "link":
            return None
        return self.repo[entry.oid].data.decode(errors="replace")

    def resolve_inside(self, rev: str, path: str, hops: int = 8) -> tuple[str | None, str | None]:
        """Follow symlinks within the tree. Returns (final path, problem)."""
        current = path
        for _ in range(hops):
            target = self.link_target(rev, current)
            if target is None:
                return current, None
            if target.startswith("/"):
                return None, f"is a symlink to {target}, outside the repository"
            joined = PurePosixPath(current).parent / target
            parts: list[str] = []
            for part in joined.parts:
                if part == "..":
                    if not parts:
                        return None, f"is a symlink to {target}, outside the repository"
                    parts.pop()
                elif part not in (".", ""):
                    parts.append(part)
            current = "/".join(parts)
        return None, "is a symlink loop"

    def new_commits(self, new: str, exclude_existing_refs: bool = True, old: str | None = None) -> Iterator[pygit2.Commit]:
        """Commits a push brings: reachable from new, not from any ref the repo already has."""
        walker = self.repo.walk(self.commit(new).id, pygit2.enums.SortMode.TOPOLOGICAL)
        if old and old != ZERO:
            walker.hide(self.commit(old).id)
        if exclude_existing_refs:
            for ref in self.repo.references:
                try:
                    target = self.repo.references[ref].peel(pygit2.Commit).id
                except (pygit2.GitError, ValueError, KeyError):
                    continue
                walker.hide(target)
        yield from walker

    def export(self, rev: str, dest: str | os.PathLike) -> int:
        """Write the commit's files into dest (no checkout, no .git); returns the file count."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        count = 0
        stack = [(self.commit(rev).tree, dest)]
        while stack:
            tree, folder = stack.pop()
            for obj in tree:
                target = folder / obj.name
                mode = obj.filemode
                if mode == pygit2.enums.FileMode.TREE:
                    target.mkdir(exist_ok=True)
                    stack.append((self.repo[obj.id], target))
                elif mode == pygit2.enums.FileMode.LINK:
                    os.symlink(self.repo[obj.id].data, target)
                    count += 1
                elif mode in (pygit2.enums.FileMode.BLOB, pygit2.enums.FileMode.BLOB_EXECUTABLE):
                    target.write_bytes(self.repo[obj.id].data)
                    if mode == pygit2.enums.FileMode.BLOB_EXECUTABLE:
                        target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
                    count += 1
        return count

    def paths(self, rev: str) -> Iterator[str]:
        stack = [(self.commit(rev).tree, "")]
        while stack:
            tree, prefix = stack.pop()
            for obj in tree:
                full = prefix + obj.name
                if obj.filemode == pygit2.enums.FileMode.TREE:
                    stack.append((self.repo[obj.id], full + "/"))
                else:
                    yield full

    def resolve_ref(self, ref: str) -> str | None:
        try:
            return str(self.repo.references[ref].peel(pygit2.Commit).id)
        except (KeyError, pygit2.GitError, ValueError):
            return None
