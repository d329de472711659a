"""Git LFS: Spaces whose large files are LFS pointers are built and served with the real
contents from the git server's store. Real git-lfs client pushing to a real bare repository with
the hooks installed, a real Podman build, real HTTP through the gateway; the pointer parser, the
store's paths and the streamed build context checked on their own beside them."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pytest

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import GatewayUnderTest
from helpers import git, push, write_files
from test_gateway_static import STATIC_README, fetch

from spacehooks import config, lfs
from spacehooks.engine import podman_build
from spacehooks.errors import SpaceError

DOCKER_README = "---\ntitle: LFS\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 30s\n---\n"
ATTRIBUTES = "*.bin filter=lfs diff=lfs merge=lfs -text\n"  # the Hub's default, for one pattern
OID = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393"


def pointer(oid=OID, size=12345):
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


# --- the pointer parser ---------------------------------------------------------------------

@pytest.mark.parametrize("data, problem", [
    (pointer(OID.upper()), "is a Git LFS pointer whose oid is not sha256: and 64 lowercase hex digits"),
    (pointer(OID[:63]), "is a Git LFS pointer whose oid is not sha256: and 64 lowercase hex digits"),
    (pointer(OID + "0"), "is a Git LFS pointer whose oid is not sha256: and 64 lowercase hex digits"),
    (pointer("../../../../etc/passwd"), "is a Git LFS pointer whose oid is not sha256: and 64 lowercase hex digits"),
    (pointer().replace(b"sha256:", b"sha1:"), "is a Git LFS pointer whose oid is not sha256: and 64 lowercase hex digits"),
    (pointer().replace(b"v1", b"v2"), "is a Git LFS pointer of a version this server does not read "
                                      "(only https://git-lfs.github.com/spec/v1)"),
    (pointer(size="0123"), 'is a Git LFS pointer without a "size" line (a number of bytes) after its oid'),
    (pointer(size="-1"), 'is a Git LFS pointer without a "size" line (a number of bytes) after its oid'),
    (pointer().replace(b"oid", b"size 1\noid"), 'is a Git LFS pointer without the "oid" line after its version line'),
    (pointer()[:-1], 'is not a Git LFS pointer as the spec writes it: the "version", "oid" and "size" lines, '
                     "each ending in a newline, and nothing else (extensions are not read here)"),
    (pointer().replace(b"\n", b"\r\n"), "is a Git LFS pointer of a version this server does not read "
                                         "(only https://git-lfs.github.com/spec/v1)"),
    (pointer() + b"ext-0-foo sha256:" + OID.encode() + b"\n", 'is not a Git LFS pointer as the spec writes it: '
     'the "version", "oid" and "size" lines, each ending in a newline, and nothing else (extensions are not read here)'),
])
def test_a_pointer_is_parsed_strictly(data, problem):
    with pytest.raises(ValueError) as caught:
        lfs.parse(data)
    assert str(caught.value) == problem


def test_a_pointer_as_git_lfs_writes_it_is_read():
    assert lfs.parse(pointer()) == lfs.Pointer(OID, 12345)
    assert lfs.parse(pointer(size=0)) == lfs.Pointer(OID, 0)


# --- the store of each layout ---------------------------------------------------------------

def test_each_layout_keeps_objects_where_its_git_server_does(server, tmp_path):
    settings = config.load()
    plain = tmp_path / "git" / "alice" / "a.git"
    (plain / "hooks").mkdir(parents=True)
    assert lfs.Store(settings, plain).object_path(OID) == plain / "lfs" / "objects" / "4d" / "7a" / OID
    gitea = tmp_path / "gitea" / "alice" / "a.git"
    (gitea / "hooks" / "pre-receive.d").mkdir(parents=True)
    assert lfs.Store(settings, gitea).object_path(OID) == Path("/var/lib/gitea/data/lfs/4d/7a") / OID[4:]
    gitlab = tmp_path / "@hashed" / "ab" / "cd" / "x.git"
    gitlab.mkdir(parents=True)
    assert lfs.Store(settings, gitlab).object_path(OID) == Path(
        "/var/opt/gitlab/gitlab-rails/shared/lfs-objects/4d/7a") / OID[4:]
    server.configure(lfs={"layout": "gitea", "gitea_path": str(tmp_path / "lfs")})
    assert lfs.Store(config.load(), plain).object_path(OID) == tmp_path / "lfs" / "4d" / "7a" / OID[4:]
    with pytest.raises(ValueError):
        lfs.Store(settings, plain).object_path("../" + OID[3:])
    server.configure(lfs={"plain_path": "lfs/objects"})
    with pytest.raises(SpaceError) as caught:
        config.load()
    assert caught.value.message.endswith("'lfs.plain_path' must be an absolute path, which may start with {repo} "
                                         "(the bare repository), found 'lfs/objects'")
    server.configure(lfs={})


def test_objects_are_opened_as_the_repository_owner_and_never_through_a_link(server):
    """A store object the git account cannot read (root's, 0600: a hard link to a root file
    would look so) is not read for it by the root server; a symlink is never followed."""
    top = Path(tempfile.mkdtemp(prefix="spacehooks-lfs-"))  # pytest's own folders are root's 0700
    try:
        top.chmod(0o755)
        repo = top / "alice" / "a.git"
        folder = repo / "lfs" / "objects" / OID[:2] / OID[2:4]
        folder.mkdir(parents=True)
        for path in [repo, *repo.rglob("*")]:
            os.chown(path, 65534, 65534)  # nobody: the git account here
        (folder / OID).write_bytes(b"root's own file")
        (folder / OID).chmod(0o600)
        settings = config.load()
        store = lfs.Store(settings, repo)
        found = store.open([OID])
        assert found == {OID: "the LFS store's object cannot be opened (Permission denied)"}
        os.chown(folder / OID, 65534, 65534)
        found = store.open([OID])
        assert isinstance(found[OID], int) and os.read(found[OID], 100) == b"root's own file"
        os.close(found[OID])
        (folder / OID).unlink()
        os.symlink("/etc/hostname", folder / OID)
        assert store.open([OID]) == {OID: "the LFS store's object cannot be opened (Too many levels of symbolic links)"}
        os.chown(repo, 0, 0)  # root's own repository: read as root, and still no link followed
        assert store.open([OID]) == {OID: "the LFS store's object cannot be opened (Too many levels of symbolic links)"}
    finally:
        shutil.rmtree(top)


# --- the build context is streamed ----------------------------------------------------------

def test_the_build_context_is_sent_as_it_is_read_not_held_in_memory(tmp_path):
    big = tmp_path / "ctx" / "model.bin"
    big.parent.mkdir()
    with big.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: no disk, the same bytes to read
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    tracemalloc.start()
    try:
        total = 0
        pieces = podman_build._tar_context(tmp_path / "ctx", {"spacehooks-secret-A": b"x"})
        for piece in [pieces] if isinstance(pieces, bytes) else pieces:  # bytes: the whole tar at once
            total += len(piece)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total % 10240 == 0 and total > 64 * 1024 * 1024  # whole tar records, the file in them
    assert peak < 4 * 1024 * 1024, f"{peak} bytes held at once"


# --- real pushes ----------------------------------------------------------------------------

def lfs_work(engine, space_id, files, lfs_files):
    """A Space repository whose lfs_files are committed through git-lfs (the Hub's way)."""
    bare, work = engine.create(space_id, files)
    git("lfs", "install", "--local", cwd=work)
    write_files(work, {".gitattributes": ATTRIBUTES, **lfs_files})
    git("add", "-A", cwd=work)
    git("commit", "-qm", "large files", cwd=work)
    return bare, work


def lines(output: str) -> list[str]:
    return [line.rstrip() for line in output.splitlines()]  # git pads remote lines with blanks


def store_path(bare, data):
    oid = hashlib.sha256(data).hexdigest()
    return bare / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def test_docker_and_static_spaces_get_the_real_contents_through_the_gateway(engine, loops):
    model = os.urandom(3 * 1024 * 1024 + 17)
    picture = os.urandom(200_000)
    dockerfile = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\n"
                  "COPY --chown=1000:1000 . .\n"
                  'RUN python -c "import hashlib; print(\'model sha256\', hashlib.sha256(open(\'model.bin\', \'rb\').read()).hexdigest())"\n'
                  'CMD ["python", "-m", "http.server", "8000"]\n')
    bare, work = lfs_work(engine, "alice/lfsdock", {"README.md": DOCKER_README, "Dockerfile": dockerfile},
                          {"model.bin": model})
    assert git("cat-file", "-p", "HEAD:model.bin", cwd=work).stdout.startswith("version https://git-lfs.github.com/spec/v1\n")
    result = push(work, f"file://{bare}")
    assert result.returncode == 0, result.stdout
    assert store_path(bare, model).read_bytes() == model  # git-lfs put it there before the pack
    static_bare, static_work = lfs_work(engine, "alice/lfssite", {"README.md": STATIC_README, "index.html": "<h1>hi</h1>\n"},
                                        {"pictures/cat.bin": picture, "copy.bin": picture})
    assert push(static_work, f"file://{static_bare}").returncode == 0
    assert engine.drain() == 2
    space = engine.space("alice/lfsdock")
    assert space["stage"] == "RUNNING", space["error"]
    log = (engine.home / "logs" / "builds" / "alice" / "lfsdock" / "1.log").read_text()
    assert hashlib.sha256(model).hexdigest() in log  # what a RUN step read from the COPY
    site = engine.space("alice/lfssite")
    assert site["stage"] == "RUNNING", site["error"]
    oid = hashlib.sha256(picture).hexdigest()
    folder = engine.home / "static" / "alice" / "lfssite" / site["commit"]
    assert (folder / oid).read_bytes() == picture  # the deploy folder names it by its LFS oid

    gw = GatewayUnderTest(engine, loops)
    try:
        status, _, body = fetch(gw, gw.host("alice/lfsdock"), "/model.bin")
        assert (status, len(body), body == model) == (200, len(model), True)
        for target in ("/pictures/cat.bin", "/copy.bin"):
            status, headers, body = fetch(gw, gw.host("alice/lfssite"), target)
            assert (status, headers["etag"], body == picture) == (200, f'"{oid}"', True)
    finally:
        gw.stop()


def test_a_push_whose_objects_are_not_in_the_store_is_refused_naming_the_files(engine):
    files = {"a.bin": b"first large file\n", "sub/b.bin": b"second large file\n", "c.bin": b"kept\n"}
    bare, work = lfs_work(engine, "alice/lfsmiss", {"README.md": STATIC_README, "index.html": "hi\n"}, files)
    # --no-verify skips git-lfs's pre-push hook: the pointers arrive, their objects do not
    result = git("push", "--no-verify", f"file://{bare}", "HEAD:main", cwd=work, check=False)
    assert result.returncode != 0
    hint = "push the object (git lfs push --all <remote>), or ask the administrator to restore it"
    said = lines(result.stdout)
    problems = [f"remote:  !     {name}: no object in the LFS store (sha256:{hashlib.sha256(data).hexdigest()[:12]}…, "
                f"{len(data)} bytes); {hint}" for name, data in sorted(files.items())]
    start = said.index("remote:  !     Sorry, your push was rejected during Space verification:")
    assert said[start + 1:start + 4] == problems, result.stdout
    assert git("rev-parse", "--verify", "-q", "refs/heads/main", cwd=bare, check=False).returncode != 0
    # an object of another size than its pointer says is no object for it either
    wrong = store_path(bare, files["a.bin"])
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(b"short\n")
    result = git("push", "--no-verify", f"file://{bare}", "HEAD:main", cwd=work, check=False)
    oid = hashlib.sha256(files["a.bin"]).hexdigest()
    assert (f"remote:  !     a.bin: the LFS store's object sha256:{oid[:12]}… is 6 bytes, the pointer says 17; {hint}"
            in lines(result.stdout)), result.stdout
    wrong.unlink()
    # the same push with its objects (git-lfs's pre-push hook) lands
    assert push(work, f"file://{bare}").returncode == 0


def test_a_pointer_with_a_bad_oid_is_refused(engine):
    bare, work = engine.create("alice/lfsbad", {"README.md": STATIC_README, "index.html": "hi\n"})
    write_files(work, {".gitattributes": ATTRIBUTES, "weights.bin": pointer(OID[:60] + "ABCD", 10)})
    git("add", "-A", cwd=work)
    git("commit", "-qm", "hand-made pointer", cwd=work)
    result = push(work, str(bare))
    assert result.returncode != 0
    assert ("remote:  !     weights.bin: is a Git LFS pointer whose oid is not sha256: and 64 lowercase hex digits"
            in lines(result.stdout)), result.stdout


def test_a_tampered_object_fails_the_build_and_says_so(engine):
    data = b"the real contents\n" * 1000
    bare, work = lfs_work(engine, "alice/lfstamper", {"README.md": STATIC_README, "index.html": "hi\n"},
                          {"data.bin": data})
    assert push(work, f"file://{bare}").returncode == 0
    stored = store_path(bare, data)
    stored.chmod(0o644)
    stored.write_bytes(b"X" + data[1:])  # same size: only the hash tells
    assert engine.drain() == 1
    space = engine.space("alice/lfstamper")
    oid = hashlib.sha256(data).hexdigest()
    other = hashlib.sha256(b"X" + data[1:]).hexdigest()
    assert space["stage"] == "BUILD_ERROR"
    assert space["error"] == (
        f"build #1 failed: data.bin: the LFS store's object sha256:{oid[:12]}… does not match its pointer "
        f"(its contents hash to sha256:{other[:12]}…): it was damaged or changed in the store\n"
        "  fix: push the object (git lfs push --all <remote>), or ask the administrator to restore it")


@pytest.mark.parametrize("layout", ["gitea", "gitlab"])
def test_gitea_and_gitlab_repositories_read_their_servers_store(engine, tmp_path, layout):
    """Their hooks run from a .d folder (a dispatcher stands in for the server's); their LFS
    objects are where the server keeps them, aa/bb/<oid[4:]>, not in the repository."""
    store = tmp_path / f"{layout}-lfs"
    engine.configure(lfs={f"{layout}_path": str(store)})
    engine.settings = config.load()
    bare, work = lfs_work(engine, f"alice/lfs{layout}", {"README.md": STATIC_README, "index.html": "hi\n"},
                          {"big.bin": b"served from the server's own store\n" * 100})
    folder = "hooks" if layout == "gitea" else "custom_hooks"
    for name in ("pre-receive", "post-receive"):
        (bare / "hooks" / name).unlink()
        (bare / folder / f"{name}.d").mkdir(parents=True, exist_ok=True)
        (bare / "hooks" / name).write_text(
            "#!/bin/bash\ndata=$(cat)\nfor hook in \"$GIT_DIR\"/" + folder + "/$(basename $0).d/*; do\n"
            "  printf '%s\\n' \"$data\" | \"$hook\" || exit 1\ndone\n")
        (bare / "hooks" / name).chmod(0o755)
    subprocess.run([sys.executable, "-m", "spacehooks", "install", str(bare)], check=True, stdout=subprocess.PIPE)
    assert lfs.Store(engine.settings, bare).layout == layout
    data = b"served from the server's own store\n" * 100
    oid = hashlib.sha256(data).hexdigest()
    # in the plain layout's place the object does not count: only the server's store does
    plain = bare / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    plain.parent.mkdir(parents=True)
    plain.write_bytes(data)
    result = git("push", "--no-verify", str(bare), "HEAD:main", cwd=work, check=False)
    assert result.returncode != 0
    assert any(line.startswith(f"remote:  !     big.bin: {lfs.MISSING} (sha256:{oid[:12]}…")
               for line in lines(result.stdout)), result.stdout
    (store / oid[:2] / oid[2:4]).mkdir(parents=True)
    (store / oid[:2] / oid[2:4] / oid[4:]).write_bytes(data)  # as the server's LFS API writes it
    result = git("push", "--no-verify", str(bare), "HEAD:main", cwd=work, check=False)
    assert result.returncode == 0, result.stdout
    assert engine.drain() == 1
    site = engine.space(f"alice/lfs{layout}")
    assert site["stage"] == "RUNNING", site["error"]
    assert (engine.home / "static" / "alice" / f"lfs{layout}" / site["commit"] / oid).read_bytes() == data


def test_a_pointer_moved_onto_the_deploy_branch_around_the_gate_is_not_built_without_its_object(engine):
    from spacehooks import heal, state
    bare, work = engine.create("alice/lfsheal", {"README.md": STATIC_README, "index.html": "hi\n"})
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    write_files(work, {".gitattributes": ATTRIBUTES, "w.bin": pointer()})
    git("add", "-A", cwd=work)
    git("commit", "-qm", "pointer without its object", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    git("push", "-q", "--no-verify", str(bare), "HEAD:refs/heads/side", cwd=work)
    git("update-ref", "refs/heads/main", sha, cwd=bare)  # the git account writes the ref: no pre-receive
    os.utime(bare / "refs" / "heads" / "main", (time.time() - 60, time.time() - 60))
    st = state.open(engine.settings)
    try:
        done = heal.Healer(engine.settings).run(st)
    finally:
        st.close()
    assert done["alice/lfsheal"] == (
        f"commit {sha[:12]} on main was not pushed through the checks and fails them: "
        f"w.bin: no object in the LFS store (sha256:{OID[:12]}…, 12345 bytes); push the object "
        "(git lfs push --all <remote>), or ask the administrator to restore it")
