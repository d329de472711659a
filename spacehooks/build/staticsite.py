"""Static Spaces' deployed files: written once per deploy under `SPACEHOOKS_HOME/static/`.

A deploy of commit C of Space owner/name becomes `static/owner/name/C/`: one file per blob,
named by its git blob id (a Git LFS file by its LFS oid, holding the real contents; so a request
path never becomes a file-system path), gzip and brotli
copies of text files where they are smaller (`<id>.gz`, `<id>.br`), and `manifest.json`
mapping each served path to its blob. The folder appears whole (written beside, then renamed)
and the state store's commit switches which one the gateway serves.
"""
from __future__ import annotations

import gzip
import json
import mimetypes
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable

from spacehooks.push import lfs
from spacehooks.errors import SpaceError
from spacehooks.git.repo import Repo

try:  # optional: gzip alone when the brotli package is missing
    import brotli
except ImportError:  # pragma: no cover - brotli is an install requirement
    brotli = None

MANIFEST = "manifest.json"
FORMAT = 1
# Larger text files are sent as they are: compressing them would hold up the deploy.
COMPRESS_MAX_BYTES = 32 * 1024 * 1024
COMPRESS_MIN_BYTES = 32  # below this a gzip header alone outweighs any gain
BROTLI_BEST_BYTES = 256 * 1024  # brotli's best (slow) quality up to this size, a quicker one above
STALE_TEMP_SECONDS = 3600  # a half-written deploy folder older than this was left by a crash
ID = re.compile(r"[0-9a-f]{40}")
FILE_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a git blob id, or an LFS oid (sha256)
NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,95}")
TEXT_TYPES = ("application/javascript", "application/json", "application/xml", "image/svg+xml",
              "application/wasm", "application/manifest+json", "text/javascript")


def content_type(path: str) -> tuple[str, str | None]:
    """(Content-Type, Content-Encoding or None) for a served path, by its extension."""
    ctype, encoding = mimetypes.guess_type(path)
    ctype = ctype or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
        ctype += "; charset=utf-8"
    return ctype, encoding


def compressible(path: str) -> bool:
    ctype, encoding = content_type(path)
    base = ctype.split(";")[0]
    return encoding is None and (base.startswith("text/") or base in TEXT_TYPES
                                 or base.endswith("+json") or base.endswith("+xml"))


def space_folder(home: str | os.PathLike, space_id: str) -> Path:
    parts = space_id.split("/")
    if len(parts) != 2 or not all(NAME_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        raise SpaceError(f"{space_id!r} is not a Space id (owner/name)")
    return Path(home) / "static" / parts[0] / parts[1]


def deploy_dir(home: str | os.PathLike, space_id: str, commit: str) -> Path:
    if not ID.fullmatch(commit or ""):
        raise SpaceError(f"{commit!r} is not a commit id")
    return space_folder(home, space_id) / commit


def is_materialised(home, space_id: str, commit: str) -> bool:
    return (deploy_dir(home, space_id, commit) / MANIFEST).is_file()


def materialise(home, space_id: str, repo_path: str | os.PathLike, commit: str,
                write: Callable[[str], None] = lambda line: None, *, export_user: str = "nobody",
                settings=None) -> Path:
    """Write the commit's served files once; returns the deploy folder (kept if already whole).
    settings: where the LFS store is (`lfs.*`); without them, the defaults.
    A commit whose README sets app_build_command serves what its build made, never its own
    files: with that deploy folder gone (removed by hand), only a rebuild brings it back."""
    def fill(temp: Path) -> dict[str, list]:
        repo = Repo(repo_path)
        if _built(repo, commit):
            raise SpaceError(f"the built files of {space_id} at {commit[:12]} are gone",
                             hint=f"spacehooks rebuild {space_id}")
        tree = temp / "tree"
        store = lfs.Store(settings, repo_path)
        repo.export(commit, tree, user=export_user, lfs=store)
        files = _take_blobs(repo, commit, tree, temp, store.taken)
        shutil.rmtree(tree)
        return files
    return write_deploy(home, space_id, commit, fill, write)


def _built(repo: Repo, commit: str) -> bool:
    from spacehooks.push import spaceconfig
    readme = spaceconfig.readme_name(repo.root_names(commit)) or "README.md"
    data = repo.read_blob(commit, readme)
    return bool(data) and bool(spaceconfig.parse(data, readme).values.get("app_build_command"))


def write_deploy(home, space_id: str, commit: str, fill: Callable[[Path], dict[str, list]],
                 write: Callable[[str], None] = lambda line: None) -> Path:
    """The deploy folder of a Space's commit, written once: fill(folder) puts each served file
    there under its blob id and returns {path: [blob id, size, 0, 0]} (the commit's files, or
    what app_build_command built: staticbuild.py); compressed copies and the manifest are added
    here, and the folder appears whole."""
    final = deploy_dir(home, space_id, commit)
    if (final / MANIFEST).is_file():
        return final
    static_root = Path(home) / "static"
    static_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Private Spaces' files: only the server's own user reads them, never the git account.
    static_root.chmod(0o700)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{commit}.", dir=final.parent))
    try:
        started = time.monotonic()
        files = fill(temp)
        squeezed = _compress(temp, files)
        (temp / MANIFEST).write_text(json.dumps({"format": FORMAT, "commit": commit, "files": files}))
        try:
            os.rename(temp, final)
        except OSError:  # another process wrote it meanwhile: theirs is as good
            if not (final / MANIFEST).is_file():
                raise
            shutil.rmtree(temp, ignore_errors=True)
        total = sum(entry[1] for entry in {f[0]: f for f in files.values()}.values())
        write(f"Static files: {len(files)} paths, {_size(total)}, {squeezed} compressed "
              f"({'gzip, brotli' if brotli else 'gzip'}) in {time.monotonic() - started:.1f}s")
        return final
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise SpaceError(f"cannot write the static files of {space_id} to {final.parent}: {exc.strerror or exc}",
                         hint="free disk space under SPACEHOOKS_HOME and push again") from exc
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _take_blobs(repo: Repo, commit: str, tree: Path, dest: Path, lfs_files: dict) -> dict[str, list]:
    """Move each exported blob to dest/<blob id>; returns {path: [blob id, size, gz, br]}.
    lfs_files: {path: pointer} of the files the export wrote with LFS contents (named by oid).

    Files are reached one folder at a time without following symlinks: a tree that made the
    export write through a link cannot make us take a file from outside it."""
    files: dict[str, list] = {}
    links = []
    dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for path in repo.paths(commit):
            entry = repo.entry(commit, path)
            if entry is None:
                continue
            if entry.kind == "link":
                links.append(path)
            elif entry.kind == "blob":
                oid, size = lfs_files.get(path) or (entry.oid, entry.size)
                if _move(tree, path, oid, size, dest_fd):
                    files[path] = [oid, size, 0, 0]
        for path in links:
            resolved, problem = repo.resolve_inside(commit, path)
            if resolved and not problem and resolved in files:
                files[path] = files[resolved]
    finally:
        os.close(dest_fd)
    return files


def _move(tree: Path, path: str, oid: str, size: int, dest_fd: int) -> bool:
    try:
        os.stat(oid, dir_fd=dest_fd, follow_symlinks=False)
        return True  # the same blob at another path: already taken
    except FileNotFoundError:
        pass
    parts = path.split("/")
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                return False  # not written, or a link where a folder belongs
            os.close(fd)
            fd = inner
        try:
            info = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return False
        os.rename(parts[-1], oid, src_dir_fd=fd, dst_dir_fd=dest_fd)
        os.chmod(oid, 0o600, dir_fd=dest_fd, follow_symlinks=False)
        return True
    finally:
        os.close(fd)


def _compress(folder: Path, files: dict[str, list]) -> int:
    """Write .gz (and .br) beside each text blob where that is smaller; records their sizes."""
    done: dict[str, tuple[int, int]] = {}
    for path, entry in sorted(files.items()):
        oid, size = entry[0], entry[1]
        if oid not in done:
            done[oid] = (0, 0)
            if COMPRESS_MIN_BYTES <= size <= COMPRESS_MAX_BYTES and compressible(path):
                done[oid] = (_gzip(folder / oid), _brotli(folder / oid, size))
        entry[2], entry[3] = done[oid]
    return sum(1 for gz, br in done.values() if gz or br)


def _keep_if_smaller(source: Path, packed: Path) -> int:
    size = packed.stat().st_size
    if size < source.stat().st_size:
        return size
    packed.unlink()
    return 0


def _gzip(source: Path) -> int:
    target = source.with_name(source.name + ".gz")
    with source.open("rb") as src, target.open("wb") as raw:
        # no name and no time in the header: the same blob always gives the same bytes
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
    return _keep_if_smaller(source, target)


def _brotli(source: Path, size: int) -> int:
    if brotli is None:
        return 0
    target = source.with_name(source.name + ".br")
    packer = brotli.Compressor(quality=11 if size <= BROTLI_BEST_BYTES else 6)
    with source.open("rb") as src, target.open("wb") as out:
        while chunk := src.read(1024 * 1024):
            out.write(packer.process(chunk))
        out.write(packer.finish())
    return _keep_if_smaller(source, target)


def read_manifest(folder: Path) -> dict[str, list]:
    data = json.loads((folder / MANIFEST).read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{folder / MANIFEST}: format {data.get('format')!r}, expected {FORMAT}")
    files = data["files"]
    for entry in files.values():
        if not FILE_ID.fullmatch(entry[0]):
            raise ValueError(f"{folder / MANIFEST}: {entry[0]!r} is not a blob id")
    return files


def prune(home, current: dict[str, str | None]) -> list[str]:
    """Remove deploy folders of commits no Space serves now, and those of deleted Spaces.

    current: {space id: served commit}. Returns the folders removed, relative to home."""
    root = Path(home) / "static"
    removed = []
    for owner in sorted(root.glob("*")) if root.is_dir() else ():
        for space in sorted(owner.glob("*")):
            space_id = f"{owner.name}/{space.name}"
            if space_id not in current:
                gone = [space]
            else:
                gone = [d for d in sorted(space.iterdir()) if d.name != current[space_id]
                        and (not d.name.startswith(".") or time.time() - d.stat().st_mtime > STALE_TEMP_SECONDS)]
            for folder in gone:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(f"{folder.relative_to(home)}/")
        if owner.is_dir() and not any(owner.iterdir()):
            owner.rmdir()
    return removed


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"
