"""What the gate's checks read through: the pushed commit (with the commit it replaces) or a
working copy for `spacehooks validate`, so both paths run the very same rules."""
from __future__ import annotations

import os
from pathlib import Path

from spacehooks.git.repo import ZERO, Repo


class CommitSource:
    def __init__(self, repo: Repo, rev: str, base: str | None = None):
        self.repo, self.rev, self.base = repo, rev, base if base != ZERO else None

    def unchanged(self, path: str) -> bool:
        """Same blob as in the commit already deployed, which passed these rules then."""
        if self.base is None:
            return False
        old, new = self.repo.entry(self.base, path), self.repo.entry(self.rev, path)
        return old is not None and new is not None and old.oid == new.oid

    def names(self) -> list[str]:
        return self.repo.root_names(self.rev)

    def kind(self, path: str) -> str | None:
        entry = self.repo.entry(self.rev, path)
        return entry.kind if entry else None

    def size(self, path: str) -> int:
        entry = self.repo.entry(self.rev, path)
        return entry.size if entry else 0

    def read(self, path: str) -> bytes:
        return self.repo.read_blob(self.rev, path) or b""

    def resolve(self, path: str):
        return self.repo.resolve_inside(self.rev, path)


class DirSource:
    def __init__(self, root: Path):
        self.root = root.resolve()

    def _path(self, path: str) -> Path:
        return self.root / path

    def unchanged(self, path: str) -> bool:
        return False

    def names(self) -> list[str]:
        return os.listdir(self.root)

    def kind(self, path: str) -> str | None:
        p = self._path(path)
        if p.is_symlink():
            return "link"
        if p.is_dir():
            return "tree"
        return "blob" if p.is_file() else None

    def size(self, path: str) -> int:
        return self._path(path).stat().st_size

    def read(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def resolve(self, path: str):
        real = self._path(path).resolve()
        if not real.is_relative_to(self.root):
            return None, f"is a symlink to {os.readlink(self._path(path))}, outside the repository"
        return str(real.relative_to(self.root)), None
