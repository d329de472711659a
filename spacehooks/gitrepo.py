"""Read-only pygit2 access to a bare repository, aware of git's push quarantine.

During pre-receive the pushed objects live in a quarantine directory that a plain
`pygit2.Repository(path)` does not see; `Repo.open_for_hook` adds it as an alternate.
"""
from __future__ import annotations

import os
import sys
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


class Change(NamedTuple):
    """A file a commit added or changed (not a submodule): its blob ids, old None when added."""
    path: str
    new: str
    old: str | None


class TreeItem(NamedTuple):
    name: bytes      # as stored: any bytes but NUL and "/" are possible in a tree git did not check
    kind: str        # "tree", "blob", "exec", "link", "commit" (submodule), "other"
    oid: pygit2.Oid


_KINDS = {pygit2.enums.FileMode.TREE: "tree", pygit2.enums.FileMode.BLOB: "blob",
          pygit2.enums.FileMode.BLOB_EXECUTABLE: "exec", pygit2.enums.FileMode.LINK: "link",
          pygit2.enums.FileMode.COMMIT: "commit"}


def _account(user: str) -> tuple[int, int]:
    import pwd
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
        raise SpaceError(f"build.export_user {user}: no such account",
                         hint="create it, or set build.export_user to an unprivileged account such as nobody") from None
    if entry.pw_uid == 0:
        from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
        raise SpaceError(f"build.export_user {user}: is root; the files of a commit are written without root",
                         hint="set build.export_user to an unprivileged account such as nobody")
    return entry.pw_uid, entry.pw_gid


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

    def changes(self, commit: pygit2.Commit) -> Iterator[Change]:
        """Files the commit adds, modifies, renames or copies against its first parent."""
        parent_tree = commit.parents[0].tree if commit.parents else None
        diff = (self.repo.diff(parent_tree, commit.tree) if parent_tree is not None
                else commit.tree.diff_to_tree(swap=True))
        for delta in diff.deltas:
            if delta.status_char() not in "AMRC" or delta.new_file.mode == pygit2.enums.FileMode.COMMIT:
                continue
            old = None
            if delta.status_char() != "A" and not delta.old_file.id == pygit2.Oid(hex=ZERO):
                old = str(delta.old_file.id)
            yield Change(delta.new_file.path, str(delta.new_file.id), old)

    def text_blob(self, oid: str, max_bytes: int) -> bytes | None:
        """The blob's bytes, or None when it is binary or larger than max_bytes."""
        blob = self.repo[oid]
        return None if blob.size > max_bytes or blob.is_binary else blob.data

    def blob_data(self, oid: str) -> bytes:
        return self.repo[oid].data

    def walk(self, rev: str, seen: set | None = None) -> Iterator[tuple[tuple[bytes, ...], list[TreeItem]]]:
        """Every tree of the commit, parents before children: (folder path parts, its entries).

        With seen, a tree whose id is in it is skipped with everything below it, and each tree
        visited is added: walking several commits with one set reads each tree once. Without
        it, a tree found at two paths is given at both (an export needs both)."""
        root = self.commit(rev).tree
        if seen is not None:
            if root.id in seen:
                return
            seen.add(root.id)
        stack = [((), root)]
        while stack:
            folder, tree = stack.pop()
            items = []
            for obj in tree:
                kind = _KINDS.get(obj.filemode, "other")
                items.append(TreeItem(obj.raw_name, kind, obj.id))
                if kind == "tree" and (seen is None or obj.id not in seen):
                    if seen is not None:
                        seen.add(obj.id)
                    stack.append((folder + (obj.raw_name,), self.repo[obj.id]))
            yield folder, items

    def small_blobs(self, rev: str, prefix: bytes, below: int, base: str | None = None
                    ) -> Iterator[tuple[tuple[bytes, ...], bytes]]:
        """(path parts, content) of each file of rev smaller than `below` bytes that starts with
        prefix (Git LFS pointers), in export order; sizes are read from object headers. With
        base, trees rev shares with that commit are skipped."""
        seen: set | None = None
        if base and base != ZERO and self.repo.get(base) is not None:
            seen = set()
            for _ in self.walk(base, seen):
                pass
        for folder, items in self.walk(rev, seen):
            for item in items:
                if item.kind in ("blob", "exec") and self.repo.odb.read_header(item.oid)[1] < below:
                    data = self.repo[item.oid].data
                    if data.startswith(prefix):
                        yield folder + (item.name,), data

    def export(self, rev: str, dest: str | os.PathLike, user: str | None = "nobody", lfs=None) -> int:
        """Write the commit's files into dest (no checkout, no .git); returns the file count.

        dest is made here (it must not exist), mode 0700. The files are written by
        `treewriter` in a forked child, as `user` when running as root (dest is handed to it),
        from one blob at a time sent over a pipe: no name in the tree, and no symlink the
        tree makes, can take a write outside dest. lfs (an `lfs.Store`): Git LFS pointers are
        written with the contents it holds for them, streamed."""
        from spacehooks import proc, treewriter
        from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
        dest = Path(dest)
        dest.mkdir(mode=0o700)
        uid = gid = None
        if os.geteuid() == 0 and user:
            uid, gid = _account(user)
            os.chown(dest, uid, gid)
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            pid, pipe_fd, msg_fd = proc.forked(treewriter.child(fd), user=uid, group=gid, keep_fds=[fd])
        finally:
            os.close(fd)
        try:
            with os.fdopen(pipe_fd, "wb") as pipe:
                if lfs is not None:
                    lfs.plan(self.small_blobs(rev, lfs.PREFIX, lfs.MAX_POINTER))
                self._send(rev, pipe, lfs)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the writer refused something; its message says what
        finally:
            if lfs is not None:
                lfs.close()
            code, message = proc.wait_forked(pid, msg_fd)
        if code != 0:
            raise SpaceError(f"cannot write the files of commit {rev[:12]}: "
                             + (message.strip() or f"the writer failed (exit {code})"))
        return int(message)

    def _send(self, rev: str, pipe, lfs=None) -> None:
        from spacehooks import treewriter  # here, not at the top: the push path never exports
        for folder, items in self.walk(rev):
            for item in items:
                parts = folder + (item.name,)
                if item.kind == "tree":
                    pipe.write(treewriter.record(treewriter.DIR, parts))
                elif item.kind == "link":
                    pipe.write(treewriter.record(treewriter.LINK, parts, self.repo[item.oid].data))
                elif item.kind in ("blob", "exec"):
                    found = lfs.contents(parts) if lfs is not None else None
                    if found is None:
                        data = self.repo[item.oid].data  # one blob in memory at a time
                        size, chunks = len(data), (data,)
                    else:
                        size, chunks = found  # an LFS object: streamed, a chunk at a time
                    mode = 0o755 if item.kind == "exec" else 0o644
                    pipe.write(treewriter.HEADER.pack(treewriter.FILE, mode, len(parts), size)
                               + b"".join(treewriter.PART.pack(len(p)) + p for p in parts))
                    for chunk in chunks:
                        pipe.write(chunk)
                # submodules (kind commit) have no files here, as in a checkout without them

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

    def on_branch(self, ref: str, commit: str) -> bool:
        """Whether `commit` is a commit that branch `ref` points to or has in its history."""
        tip = self.resolve_ref(ref)
        try:
            obj = self.repo.get(commit)
        except ValueError:
            return False
        if tip is None or obj is None or obj.type != pygit2.enums.ObjectType.COMMIT:
            return False
        return tip == str(obj.id) or self.repo.descendant_of(tip, obj.id)
