"""Hostile tree entry names: refused at push by the gate and by git's own checks, and unable
to write outside the build folder even when stored behind the gate's back."""
import os
import pwd
import subprocess
import sys

import pytest

from helpers import GRADIO_README, bare_repo, git, push, raw_blob, raw_commit, raw_tree, refs_and_objects

REJECTED = "Sorry, your push was rejected during Space verification:"
DOCKER_README = "---\ntitle: D\nsdk: docker\napp_port: 8000\n---\n"


def cli(*args, check=True):
    return subprocess.run([sys.executable, "-m", "spacehooks", *args], check=check,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def remote_problems(result):
    lines = [line.removeprefix("remote: ").rstrip() for line in result.stdout.splitlines()]
    return [line.removeprefix(" !     ") for line in lines
            if line.startswith(" !     ") and REJECTED not in line and not line.startswith(" !     warning:")]


class Objects:
    """Objects written straight into a repository with git plumbing, no checks on the way."""

    def __init__(self, repo):
        self.repo = repo
        self.readme = raw_blob(repo, GRADIO_README.encode())
        self.app = raw_blob(repo, b"print('hi')\n")
        self.pwned = raw_blob(repo, b"pwned\n")

    def space_tree(self, *extra):
        return raw_tree(self.repo, [("100644", b"README.md", self.readme), ("100644", b"app.py", self.app), *extra])

    def commit(self, tree, *parents):
        return raw_commit(self.repo, tree, *parents)


def bad_trees(objects: Objects, outside: str) -> dict:
    """name -> (tree entries added to a good Space, the gate's problems without the commit part)."""
    o = objects
    inner = raw_tree(o.repo, [("100644", b"pwned", o.pwned)])
    link = raw_blob(o.repo, outside.encode())
    return {
        "dotdot": ([("40000", b"..", inner)], ['..: a tree entry may not be named ".."']),
        "dot": ([("40000", b".", inner)], ['.: a tree entry may not be named "."']),
        "dotgit": ([("40000", b".git", inner)], ['.git: a tree entry may not be named ".git" (in any letter case)']),
        "dotgit-case": ([("40000", b".GiT", inner)], ['.GiT: a tree entry may not be named ".git" (in any letter case)']),
        "slash": ([("100644", b"a/b", o.pwned)], ['"a/b": a tree entry name may not contain "/"']),
        "absolute": ([("100644", outside.encode() + b"/pwned", o.pwned)],
                     [f'"{outside}/pwned": a tree entry name may not contain "/"']),
        "nested": ([("40000", b"sub", raw_tree(o.repo, [("40000", b"..", inner)]))],
                   ['sub/..: a tree entry may not be named ".."']),
        "link-and-folder": ([("120000", b"a", link), ("40000", b"a", inner)], ["a: two tree entries have this name"]),
    }


@pytest.fixture
def gated(server):
    """A repository with the hooks but git's own object checks off: the gate alone decides."""
    bare = bare_repo(server.root, "alice/names")
    cli("install", str(bare))
    git("config", "--unset", "receive.fsckObjects", cwd=bare, check=False)  # absent before it was installed
    return bare


def test_each_bad_name_is_refused_at_push_naming_the_path(server, gated, tmp_path):
    work = tmp_path / "w"
    git("init", "-q", "-b", "main", str(work))
    objects = Objects(work / ".git")
    good = objects.commit(objects.space_tree())
    git("update-ref", "refs/heads/main", good, cwd=work)
    assert push(work, str(gated)).returncode == 0
    for name, (entries, expected) in bad_trees(objects, str(tmp_path / "outside")).items():
        commit = objects.commit(objects.space_tree(*entries), good)
        git("update-ref", "refs/heads/main", commit, cwd=work)
        before = refs_and_objects(gated)
        result = push(work, str(gated))
        assert result.returncode != 0, (name, result.stdout)
        assert f"remote:  !     {REJECTED}" in result.stdout
        assert remote_problems(result) == [f"{p} (commit {commit[:7]})" for p in expected], name
        assert refs_and_objects(gated) == before


def test_a_bad_tree_in_an_earlier_commit_of_the_push_is_refused(server, gated, tmp_path):
    work = tmp_path / "w"
    git("init", "-q", "-b", "main", str(work))
    objects = Objects(work / ".git")
    inner = raw_tree(objects.repo, [("100644", b"pwned", objects.pwned)])
    first = objects.commit(objects.space_tree(("40000", b"..", inner)))
    second = objects.commit(objects.space_tree(), first)  # the tip itself is clean
    git("update-ref", "refs/heads/main", second, cwd=work)
    result = push(work, str(gated))
    assert result.returncode != 0
    assert remote_problems(result) == [f'..: a tree entry may not be named ".." (commit {first[:7]})']


def test_a_bad_commit_already_on_an_unchecked_branch_is_refused_on_main(server, gated, tmp_path):
    work = tmp_path / "w"
    git("init", "-q", "-b", "main", str(work))
    objects = Objects(work / ".git")
    bad = objects.commit(objects.space_tree(("40000", b".git", raw_tree(objects.repo, [("100644", b"config", objects.pwned)]))))
    git("update-ref", "refs/heads/other", bad, cwd=work)
    assert push(work, str(gated), "refs/heads/other:refs/heads/other").returncode == 0  # not checked
    git("update-ref", "refs/heads/main", bad, cwd=work)
    result = push(work, str(gated))
    assert result.returncode != 0
    assert remote_problems(result) == [f'.git: a tree entry may not be named ".git" (in any letter case) (commit {bad[:7]})']


def test_name_rule_refuses_what_git_itself_cannot_carry():
    """A NUL ends a name in git's tree format and git will not pack an empty name: no push
    can bring these, but the rule the writer applies refuses them all the same."""
    from spacehooks.git.treewriter import name_problem
    assert name_problem(b"") == "a tree entry has an empty name"
    assert name_problem(b"a\0b") == "a tree entry name may not contain a NUL byte"
    assert name_problem(b".gitignore") is None and name_problem(b"..a") is None


# --- git's own checks ---------------------------------------------------------------------------

FSCK_KEYS = {"receive.fsckobjects": "true", "receive.fsck.hasdotdot": "error", "receive.fsck.hasdotgit": "error",
             "receive.fsck.duplicateentries": "error", "receive.fsck.baddate": "warn",
             "receive.fsck.badtimezone": "warn", "receive.fsck.zeropaddedfilemode": "warn"}


def receive_config(repo):
    lines = git("config", "--local", "--get-regexp", r"^receive\.", cwd=repo).stdout.splitlines()
    return dict(line.split(" ", 1) for line in lines)


def test_install_and_create_turn_on_gits_checks_and_git_refuses_a_bad_tree(server, tmp_path):
    bare = bare_repo(server.root, "alice/plain")
    first = cli("install", str(bare)).stdout
    assert "enabled git's checks of received objects" in first
    assert FSCK_KEYS.items() <= receive_config(bare).items()
    assert cli("install", str(bare)).stdout.strip() == f"{bare}: unchanged (plain layout)"
    created = cli("create", "alice/created").stdout
    assert "created " in created
    assert FSCK_KEYS.items() <= receive_config(server.root / "alice" / "created.git").items()
    template = tmp_path / "template"
    cli("git-template", str(template))
    templated = tmp_path / "from-template.git"
    git("init", "-q", "--bare", f"--template={template}", str(templated))
    assert FSCK_KEYS.items() <= receive_config(templated).items()

    work = tmp_path / "w"
    git("init", "-q", "-b", "main", str(work))
    objects = Objects(work / ".git")
    inner = raw_tree(objects.repo, [("100644", b"pwned", objects.pwned)])
    bad = objects.commit(objects.space_tree(("40000", b"..", inner)))
    git("update-ref", "refs/heads/main", bad, cwd=work)
    for repo in (bare, server.root / "alice" / "created.git"):
        before = refs_and_objects(repo)
        result = push(work, str(repo))
        assert result.returncode != 0
        assert "hasDotdot: contains '..'" in result.stdout
        assert "-----> Checking" not in result.stdout  # git refused before any hook ran
        assert refs_and_objects(repo) == before


def test_an_old_commit_with_a_bad_date_still_pushes_with_a_warning(server, tmp_path):
    bare = bare_repo(server.root, "alice/old")
    cli("install", str(bare))
    work = tmp_path / "w"
    git("init", "-q", "-b", "main", str(work))
    objects = Objects(work / ".git")
    # as some old converters wrote them: a time zone without minutes, a zero-padded date
    body = (f"tree {objects.space_tree()}\n"
            "author Old Tool <old@example.com> 0100000000 +01\n"
            "committer Old Tool <old@example.com> 0100000000 +01\n\nimported\n").encode()
    commit = subprocess.run(["git", "hash-object", "-t", "commit", "--literally", "-w", "--stdin"], cwd=work,
                            input=body, check=True, stdout=subprocess.PIPE).stdout.decode().strip()
    git("update-ref", "refs/heads/main", commit, cwd=work)
    # git's strict defaults alone would refuse it
    strict = bare_repo(server.root, "alice/strict")
    git("config", "receive.fsckObjects", "true", cwd=strict)
    assert push(work, str(strict)).returncode != 0
    result = push(work, str(bare))
    assert result.returncode == 0, result.stdout
    assert "warning: object " in result.stdout and "zeroPaddedDate" in result.stdout
    assert git("rev-parse", "main", cwd=bare).stdout.strip() == commit


def test_uninstall_keeps_gits_checks_and_says_so(server):
    bare = bare_repo(server.root, "alice/un")
    cli("install", str(bare))
    out = cli("uninstall", str(bare)).stdout
    assert ("kept git's checks of received objects (git config --unset receive.fsckObjects "
            "and --remove-section receive.fsck remove them)") in out
    assert receive_config(bare)["receive.fsckobjects"] == "true"


def test_doctor_names_repositories_without_gits_checks(server, podman_url):
    ok = bare_repo(server.root, "alice/ok")
    cli("install", str(ok))
    lacking = bare_repo(server.root, "bob/bare")
    out = cli("doctor", check=False).stdout
    assert (f"PROBLEM  1 of 2 repositories under {server.root} lack git's checks of received objects "
            f"(receive.fsckObjects, receive.fsck.*): {lacking}\n  fix: spacehooks install {server.root}") in out
    cli("install", str(lacking))
    out = cli("doctor", check=False).stdout
    assert f"ok       git's checks of received objects on all 2 repositories under {server.root}" in out


# --- the export -----------------------------------------------------------------------------

def snapshot(folder):
    return sorted((str(p), p.is_symlink() or p.read_bytes()) for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())


def test_a_tree_stored_behind_the_gates_back_cannot_write_outside_the_build(server, tmp_path):
    """No hooks, no fsck: the objects are put in the repository with plumbing, as a tree stored
    before these checks existed would be. The build's export refuses and writes nothing outside."""
    from spacehooks import config
    from spacehooks.build import builder
    from spacehooks.errors import SpaceError
    settings = config.load()
    bare = bare_repo(server.root, "alice/stored")
    objects = Objects(bare)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("keep me\n")
    dockerfile = raw_blob(bare, b"FROM scratch\n")
    readme = raw_blob(bare, DOCKER_README.encode())
    expected = {
        "dotdot": 'cannot write the files of commit {c}: ..: a tree entry may not be named ".."',
        "slash": 'cannot write the files of commit {c}: "a/b": a tree entry name may not contain "/"',
        "dotgit": 'cannot write the files of commit {c}: .git: a tree entry may not be named ".git" (in any letter case)',
        "absolute": 'cannot write the files of commit {c}: "' + str(outside) + '/pwned": a tree entry name may not contain "/"',
        "link-and-folder": "cannot write the files of commit {c}: a: the tree holds this name twice",
        "nested": 'cannot write the files of commit {c}: sub/..: a tree entry may not be named ".."',
    }
    cases = bad_trees(objects, str(outside))
    commits = {name: objects.commit(raw_tree(bare, [("100644", b"Dockerfile", dockerfile), ("100644", b"README.md", readme),
                                                  *cases[name][0]]))
               for name in expected}
    before = snapshot(tmp_path)
    for name, message in expected.items():
        with pytest.raises(SpaceError) as caught:
            builder.build(settings, "alice/stored", bare, commits[name], 1, {"sdk": "docker"}, secrets={},
                          no_cache=False, write=lambda line: None, should_stop=lambda: False)
        assert caught.value.message == message.format(c=commits[name][:12]), name
        assert snapshot(tmp_path) == before, name
    assert (outside / "sentinel").read_text() == "keep me\n"


def test_the_writer_refuses_a_hostile_stream_without_following_links(tmp_path):
    """The writer itself, fed records no honest tree walk sends: a link, then a file through it."""
    from spacehooks import proc
    from spacehooks.git import treewriter as tw
    outside = tmp_path / "outside"
    outside.mkdir()
    streams = {
        "through-link": [tw.record(tw.LINK, (b"a",), str(outside).encode()), tw.record(tw.FILE, (b"a", b"pwned"), b"x")],
        "dotdot-part": [tw.record(tw.DIR, (b"d",)), tw.record(tw.FILE, (b"d", b"..", b"pwned"), b"x")],
        "twice": [tw.record(tw.FILE, (b"f",), b"1"), tw.record(tw.FILE, (b"f",), b"2")],
        "file-over-link": [tw.record(tw.LINK, (b"l",), str(outside / "new").encode()), tw.record(tw.FILE, (b"l",), b"x")],
    }
    expected = {
        "through-link": "a: not a folder this export made (Not a directory)",
        "dotdot-part": 'd/../pwned: a tree entry may not be named ".."',
        "twice": "f: the tree holds this name twice",
        "file-over-link": "l: the tree holds this name twice",
    }
    user = "nobody" if os.geteuid() == 0 else None
    uid, gid = (pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid) if user else (None, None)
    for name, records in streams.items():
        dest = tmp_path / name
        dest.mkdir()
        if uid is not None:
            os.chown(dest, uid, gid)
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        pid, pipe, msg = proc.forked(tw.child(fd), user=uid, group=gid, keep_fds=[fd])
        os.close(fd)
        try:
            with os.fdopen(pipe, "wb") as out:
                for rec in records:
                    out.write(rec)
        except BrokenPipeError:
            pass
        code, message = proc.wait_forked(pid, msg)
        assert (code, message) == (1, expected[name]), name
        assert list(outside.iterdir()) == [], name


def test_export_writes_files_links_and_modes_as_the_unprivileged_account(server, tmp_path):
    from spacehooks.git.repo import Repo
    bare = bare_repo(server.root, "alice/good")
    objects = Objects(bare)
    script = raw_blob(bare, b"#!/bin/sh\necho hi\n")
    same = raw_tree(bare, [("100644", b"f", objects.pwned)])
    tree = objects.space_tree(("40000", b"one", same), ("40000", b"two", same),
                              ("100755", b"run.sh", script), ("120000", b"link", raw_blob(bare, b"one/f")))
    commit = objects.commit(tree)
    dest = tmp_path / "work" / "app"
    dest.parent.mkdir(mode=0o700)
    assert Repo(bare).export(commit, dest) == 6
    owner = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert {p.lstat().st_uid for p in [dest, *dest.rglob("*")]} == {owner}
    assert oct(dest.stat().st_mode & 0o777) == "0o700"
    assert (dest / "one" / "f").read_bytes() == (dest / "two" / "f").read_bytes() == b"pwned\n"
    assert os.readlink(dest / "link") == "one/f"
    assert oct((dest / "run.sh").stat().st_mode & 0o777) == "0o755"
    assert oct((dest / "app.py").stat().st_mode & 0o777) == "0o644"
    assert oct((dest / "one").stat().st_mode & 0o777) == "0o755"
