"""The git account records pushes, and nothing more (issue 10, item 4).

A real unprivileged git account, set up as contrib/setup.sh does (in the group `spacehooks`,
pushing to repositories it owns under repo_root), attacks the state folder root made: the
secrets, the store, the spool. Every attack must fail; its push records are checked by the
server before anything is queued; a genuine push still deploys."""
import grp
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import threading
import time

import pytest
import yaml

import servers
from helpers import GIT_ENV, git, work_repo

USER = "spacehooks-perm"
GROUP = "spacehooks"
STATIC_README = "---\ntitle: Page\nsdk: static\n---\n"
IMAGE = "localhost/spacehooks/space/alice/demo:b7"


class Site:
    def __init__(self, base, user, python):
        from spacehooks import config, state
        self.base, self.user, self.python = base, user, python
        self.repo_root = base / "home" / "git"
        self.home = base / "state"
        conf = base / "etc" / "config.yaml"
        conf.parent.mkdir()
        conf.write_text(yaml.safe_dump({"repo_root": str(self.repo_root), "build": {"push_log_seconds": 0}}))
        self.settings = config.load(path=conf, home=self.home)
        state.open(self.settings).close()  # root makes the state folder, as `spacehooks serve` does
        from spacehooks import spool
        spool.share_settings(self.settings)  # ... and leaves its parse of the settings for post-receive
        self.env = {**GIT_ENV, "SPACEHOOKS_CONFIG": str(conf), "SPACEHOOKS_HOME": str(self.home),
                    "HOME": user.pw_dir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        self.bare = self.repo_root / "alice" / "demo.git"
        self.bare.mkdir(parents=True)
        servers.run(["git", "init", "-q", "--bare", "-b", "main", self.bare])
        servers.run([python, "-m", "spacehooks", "install", self.bare], env={**os.environ, **self.env})
        self.work = work_repo(base / "home" / "work", {"README.md": STATIC_README, "index.html": "<p>hi</p>\n"})
        servers.chown_tree(base / "home", user)

    def as_git(self, *args, **kw):
        """A command run by the git account (what a pusher's hook, or a shell on it, can do)."""
        return subprocess.run(["runuser", "-u", USER, "--", "env", *(f"{k}={v}" for k, v in self.env.items()),
                               *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", **kw)

    def push(self, *options):
        opts = [x for o in options for x in ("-o", o)]
        return self.as_git("git", "-C", self.work, "push", *opts, self.bare, "HEAD:refs/heads/main")

    def drop(self, record):
        """A record written by the git account through the hooks' own code."""
        code = ("import json, sys; from spacehooks import spool; "
                "print(spool.drop(sys.argv[1], json.loads(sys.argv[2])))")
        result = self.as_git(self.python, "-c", code, self.home, json.dumps(record))
        assert result.returncode == 0, result.stdout
        return result.stdout.strip()

    def state(self):
        from spacehooks import state
        return state.open(self.settings)


@pytest.fixture
def site(monkeypatch):
    for key, value in servers.SAFE_DIRECTORY_ENV.items():
        monkeypatch.setenv(key, value)  # root reads the git account's repositories
    base = servers.server_dir("perm")
    if subprocess.run(["getent", "group", GROUP], stdout=subprocess.DEVNULL).returncode != 0:
        servers.run(["groupadd", "--system", GROUP])
    user = servers.ensure_user(USER, base / "home")
    servers.run(["usermod", "-a", "-G", GROUP, USER])
    python = servers.python_for_git_users(base / "venv")
    yield Site(base, user, python)
    shutil.rmtree(base)


def test_the_git_account_cannot_touch_the_secrets_or_the_store(site):
    from spacehooks import state
    home = site.home
    state.write_secret(home, "alice/demo", "TOKEN", "s3cret")
    st = site.state()
    st.ensure_space("alice/demo", site.bare)
    st.update_space("alice/demo", image=IMAGE, hardware="cpu-basic", limits={"memory_mb": 512})
    st.close()
    leak = site.base / "home" / "leak"
    site.as_git("touch", leak)
    secrets = home / "secrets"
    planted = f"import os; os.makedirs('{secrets}/alice/demo', exist_ok=True); open('{secrets}/alice/demo/EVIL', 'w').write('x')"
    rewrite = (f"import sqlite3; c = sqlite3.connect('{home}/state.db');"
               " c.execute(\"UPDATE spaces SET image = 'evil:latest', limits = '{}'\"); c.commit()")
    attacks = {
        "move the secrets folder away": ["mv", secrets, home / "secrets.old"],
        "list the secrets": ["ls", secrets / "alice" / "demo"],
        "read a secret": ["cat", secrets / "alice" / "demo" / "TOKEN"],
        "create a secret": [site.python, "-c", planted],
        "link a secret's temporary file": ["ln", "-s", leak, secrets / "alice" / "demo" / ".TOKEN.tmp"],
        "rewrite a Space's image in state.db": [site.python, "-c", rewrite],
        "read state.db": ["cat", home / "state.db"],
        "replace state.db": ["mv", home / "state.db", home / "state.old"],
        "plant a -wal file": ["touch", home / "state.db-wal"],
        "list the waiting push records": ["ls", home / "incoming"],
        "write an answer to a push": ["touch", home / "pushes" / ("0" * 32 + ".json")],
        "make the state folder group-writable": ["chmod", "g+w", home],
        "rewrite the settings post-receive takes": ["sh", "-c", f"echo '{{}}' > {home}/pushes/settings.json"],
        "replace the settings post-receive takes": ["mv", home / "pushes" / "settings.json", home / "settings.old"],
    }
    held = {name: site.as_git(*cmd) for name, cmd in attacks.items()}
    print("\n".join(f"{name:45} {'held' if r.returncode else 'BROKEN: ' + r.stdout.strip()}"
                    for name, r in held.items()))
    assert {name: r.returncode != 0 for name, r in held.items()} == {name: True for name in attacks}

    # root writes a secret again: nothing planted is followed, the values stay the server's
    state.write_secret(home, "alice/demo", "TOKEN", "n3w")
    assert leak.read_text() == ""
    assert state.read_secrets(home, "alice/demo") == {"TOKEN": "n3w"}
    st = site.state()
    space = st.get_space("alice/demo")
    st.close()
    assert (space["image"], space["limits"]) == (IMAGE, {"memory_mb": 512})
    gid = grp.getgrnam(GROUP).gr_gid
    for path, mode in ((home, 0o2755), (home / "state.db", 0o600), (home / "incoming", 0o1730),
                       (home / "pushes", 0o2750), (secrets, 0o700)):
        info = path.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, mode), path
    assert (home / "incoming").stat().st_gid == gid


def test_secrets_never_follow_a_planted_link_or_trust_a_foreign_folder(site):
    """Had the git account reached the secrets folder (an older set-up gave it the state
    folder), what it planted there is refused, never followed."""
    from spacehooks import state
    from spacehooks.errors import SpaceError
    home = site.home
    state.write_secret(home, "alice/demo", "TOKEN", "s3cret")
    leak = site.base / "home" / "leak"
    site.as_git("touch", leak)
    folder = home / "secrets" / "alice" / "demo"
    (folder / "OTHER").symlink_to(leak)           # a key that is a link: not read
    (folder / ".TOKEN.tmp").symlink_to(leak)      # the old code's fixed temporary name
    state.write_secret(home, "alice/demo", "TOKEN", "v2")
    assert leak.read_text() == ""
    assert state.read_secrets(home, "alice/demo") == {"TOKEN": "v2"}

    # a secrets folder of the git account's own making is refused for reading and writing
    os.rename(home / "secrets", home / "secrets.real")
    site.as_git("true")
    os.mkdir(home / "secrets")
    os.chown(home / "secrets", site.user.pw_uid, site.user.pw_gid)
    site.as_git("mkdir", "-p", folder)
    site.as_git("sh", "-c", f"echo planted > {folder}/TOKEN")
    site.as_git("ln", "-s", leak, folder / ".TOKEN.tmp")
    for attempt in (lambda: state.write_secret(home, "alice/demo", "TOKEN", "v3"),
                    lambda: state.read_secrets(home, "alice/demo")):
        with pytest.raises(SpaceError) as refused:
            attempt()
        assert refused.value.format_message() == (
            f"{home}/secrets belongs to uid {site.user.pw_uid}: secrets are not read or written there\n"
            f"  fix: remove {home}/secrets (spacehooks makes it again, owned by uid 0, mode 0700)")
    assert leak.read_text() == ""


def _commit_in_bare(site, readme, branch="main"):
    """A commit the git account writes straight into its bare repository: no hook runs."""
    bare = site.bare
    blob = site.as_git("sh", "-c", f"printf '%s' '{readme}' | git -C {bare} hash-object -w --stdin").stdout.strip()
    tree = site.as_git("sh", "-c", f"printf '100644 blob {blob}\\tREADME.md\\n' | git -C {bare} mktree").stdout.strip()
    commit = site.as_git("git", "-C", bare, "commit-tree", tree, "-m", "forged").stdout.strip()
    assert site.as_git("git", "-C", bare, "update-ref", f"refs/heads/{branch}", commit).returncode == 0
    return commit


def test_forged_push_records_are_refused_and_never_acted_on(site, caplog):
    from spacehooks import spool
    from spacehooks.queue import intake
    pushed = site.push()
    assert pushed.returncode == 0, pushed.stdout
    good = git("rev-parse", "HEAD", cwd=site.work).stdout.strip()
    st = site.state()
    assert intake.take_all(site.settings, st) == 1  # the genuine push: one build
    assert [b["commit"] for b in st.builds("alice/demo")] == [good]
    st.close()

    outside = site.base / "home" / "evil.git"
    site.as_git("git", "init", "-q", "--bare", "-b", "main", outside)
    site.as_git("git", "-C", outside, "fetch", "-q", site.bare, "main:main")
    side = _commit_in_bare(site, STATIC_README + "side\n", branch="side")
    bad_readme = _commit_in_bare(site, "---\nsdk: nosuchsdk\n---\n")
    other = site.repo_root / "mallory" / "x.git"
    site.as_git("git", "init", "-q", "--bare", "-b", "main", other)
    site.as_git("git", "-C", other, "fetch", "-q", site.bare, f"{good}:refs/heads/main")

    def rec(**kw):
        return {"space": "alice/demo", "repo": str(site.bare), "commit": good, "pusher": "alice", "options": {}, **kw}
    forged = {
        "a repository outside repo_root": rec(repo=str(outside)),
        "a repository that does not exist": rec(repo=str(site.repo_root / "alice" / "none.git")),
        "a commit that does not exist": rec(commit="1" * 40),
        "a commit not on the deploy branch": rec(commit=side),
        "a README the gate refuses": rec(commit=bad_readme),
        "another Space's name": rec(repo=str(other)),
        "a record with other fields": {**rec(), "image": "evil:latest"},
        "a malformed Space id": rec(space="../../etc"),
        # pre-receive, run as the git account, cannot see the store's Spaces: the server does
        "an id whose address a known Space holds": rec(space="Alice/demo", commit=bad_readme),
    }
    names = {site.drop(record): what for what, record in forged.items()}
    # and files that are no records at all; a link to a root-only file holding a valid record
    secret_record = site.base / "root-only.json"
    secret_record.write_text(json.dumps(rec()))
    secret_record.chmod(0o600)
    incoming = site.home / "incoming"
    raw = {"0" * 32: ["ln", "-s", secret_record, incoming / ("0" * 32 + ".push")],
           "1" * 32: ["sh", "-c", f"echo not json > {incoming / ('1' * 32 + '.push')}"],
           "2" * 32: [site.python, "-c", f"open('{incoming / ('2' * 32 + '.push')}', 'w').write(' ' * 100000)"],
           "3" * 32: ["mkfifo", incoming / ("3" * 32 + ".push")]}
    for name, cmd in raw.items():
        assert site.as_git(*cmd).returncode == 0
    names.update({"0" * 32: "a link", "1" * 32: "not JSON", "2" * 32: "a large file", "3" * 32: "a FIFO"})

    st = site.state()
    try:
        with caplog.at_level("WARNING", logger="spacehooks"):
            assert intake.take_all(site.settings, st) == len(names)
        assert [b["commit"] for b in st.builds("alice/demo")] == [good]
        assert [s["id"] for s in st.list_spaces()] == ["alice/demo"]
    finally:
        st.close()
    assert os.listdir(incoming) == []
    errors = {what: spool.read_answer(site.home, name) for name, what in names.items()}
    print("\n".join(f"{what:40} {answer['state']}: {answer['error'][:90]}" for what, answer in errors.items()))
    assert {what: a["state"] for what, a in errors.items()} == {what: "refused" for what in errors}
    root = os.path.realpath(site.repo_root)
    expected = {
        "a repository outside repo_root": f"{outside} is not a repository under repo_root {root}",
        "a repository that does not exist": f"{site.repo_root}/alice/none.git does not exist",
        "a commit that does not exist": f"commit 111111111111 is not on branch main of {site.bare}",
        "a commit not on the deploy branch": f"commit {side[:12]} is not on branch main of {site.bare}",
        "a README the gate refuses": f"commit {bad_readme[:12]} does not pass the checks: README.md:2: "
                                     '"sdk" must be one of [gradio, streamlit, docker, static] (found "nosuchsdk")',
        "another Space's name": f"alice/demo is built from {site.bare}, not from {other}",
        "a record with other fields": "not a push record: it must have exactly space, repo, commit, pusher and options",
        "a malformed Space id": "not a Space id: '../../etc'",
        "an id whose address a known Space holds": 'Alice/demo: its address alice-demo.localhost belongs to alice/demo; '
                                                   'ids that differ only in letter case or in "/", "-", "_", "." share '
                                                   'one address: push it under another name',
        "a link": "the record cannot be opened without following a link (Too many levels of symbolic links)",
        "not JSON": "the record is not JSON",
        "a large file": "the record is 100000 bytes, more than the 16384 a record may have",
        "a FIFO": "the record is not a regular file",
    }
    assert {what: a["error"] for what, a in errors.items()} == expected
    assert sum("refused" in r.getMessage() for r in caplog.records) == len(names)


def test_a_genuine_push_is_queued_and_deployed_by_the_server(site):
    """With the server's loop running (root), the git account's push streams its build to the end."""
    from spacehooks.run import worker
    site.env["SPACEHOOKS_PUSHER"] = "carol"
    head = git("rev-parse", "HEAD", cwd=site.work).stdout.strip()

    # no server: the push says so, and the record waits for one
    waiting = site.push()
    assert waiting.returncode == 0, waiting.stdout
    lines = [line.removeprefix("remote: ").rstrip() for line in waiting.stdout.splitlines() if line.startswith("remote: ")]
    assert f"-----> Push of alice/demo at {head[:12]} recorded" in lines, waiting.stdout
    assert (" !     no build worker is running: the push is queued when `spacehooks worker`"
            " (or `spacehooks serve`) runs") in lines

    stop = threading.Event()
    loop = threading.Thread(target=worker.Worker(site.settings).run, args=(stop,), kwargs={"restore": False})
    loop.start()
    try:
        # the record that waited is taken in and built as soon as the server runs
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _statuses(site) != ["succeeded"]:
            time.sleep(0.1)
        assert _statuses(site) == ["succeeded"]
        site.as_git("git", "-C", site.work, "commit", "-q", "--allow-empty", "-m", "two")
        second = git("rev-parse", "HEAD", cwd=site.work).stdout.strip()
        pushed = site.push("wait")
        assert pushed.returncode == 0, pushed.stdout
        lines = [line.removeprefix("remote: ").rstrip() for line in pushed.stdout.splitlines()
                 if line.startswith("remote: ")]
        assert f"-----> Build #2 queued for alice/demo at {second[:12]}" in lines, pushed.stdout
        assert "       Deployed: alice/demo is RUNNING" in lines, pushed.stdout
        assert lines[-1] == "-----> Build #2 deployed: alice/demo is RUNNING", pushed.stdout
    finally:
        stop.set()
        loop.join(30)
    st = site.state()
    try:
        builds = st.builds("alice/demo")
        space = st.get_space("alice/demo")
    finally:
        st.close()
    assert [(b["commit"], b["pusher"], b["status"]) for b in builds] == [
        (second, "carol", "succeeded"), (head, "carol", "succeeded")]
    assert (space["stage"], space["commit"], space["repo_path"]) == ("RUNNING", second, str(site.bare))
    # the git account never opened the store: it is root's alone, as root made it
    assert {p.name for p in site.home.iterdir() if p.name.startswith("state.db")} <= {"state.db", "state.db-wal", "state.db-shm"}
    assert all(p.stat().st_uid == 0 and stat.S_IMODE(p.stat().st_mode) == 0o600
               for p in site.home.iterdir() if p.name.startswith("state.db"))


def test_a_push_that_cannot_reach_the_server_says_so(site):
    os.chmod(site.home / "incoming", 0o1700)  # as if the git account were not in the group
    pushed = site.push()
    assert pushed.returncode == 0, pushed.stdout
    lines = [line.removeprefix("remote: ").rstrip() for line in pushed.stdout.splitlines() if line.startswith("remote: ")]
    assert lines[-2:] == [
        f" !     The push was stored, but the server could not be told: cannot write into {site.home}/incoming"
        " (Permission denied)",
        " !     the git account must be in the group spacehooks; then the next push is built"
        " (`spacehooks rebuild alice/demo` builds this one if the server knows the Space)"], pushed.stdout


def _statuses(site):
    st = site.state()
    try:
        return [b["status"] for b in st.builds("alice/demo")]
    finally:
        st.close()


def test_an_older_set_up_is_taken_back_by_root(site):
    """A state folder an older setup.sh gave to the git account is refused until it is root's;
    a group-writable store of root's becomes root's alone when root opens it."""
    from spacehooks import state
    from spacehooks.errors import SpaceError
    home = site.home
    os.chown(home, site.user.pw_uid, -1)
    with pytest.raises(SpaceError) as refused:
        state.open(site.settings)
    assert refused.value.format_message() == (
        f"{home} belongs to uid {site.user.pw_uid}, not to this account (uid 0): whoever owns it can replace"
        f" the state store and the secrets\n  fix: run spacehooks as the owner of {home}, or give it to root:"
        f" chown root: {home} (contrib/setup.sh does)")
    os.chown(home, 0, -1)
    os.chmod(home, 0o2775)
    os.chown(home / "state.db", site.user.pw_uid, -1)
    os.chmod(home / "state.db", 0o660)
    state.open(site.settings).close()
    assert stat.S_IMODE(home.stat().st_mode) == 0o2755
    info = (home / "state.db").stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
    with sqlite3.connect(home / "state.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_doctor_reports_a_state_folder_others_can_write(site, podman_url):
    from spacehooks.admin import doctor
    from spacehooks.results import Check
    assert Check(True, f"SPACEHOOKS_HOME {site.home} is writable by its owner only") in doctor.doctor(site.settings).checks
    os.chmod(site.home, 0o2775)  # what an older setup.sh made
    report = doctor.doctor(site.settings)
    assert report.problems
    assert Check(False, f"SPACEHOOKS_HOME {site.home} (uid 0, mode 2775) can be written by others: the git account"
                 f" could replace the state store or the secrets",
                 f"chown root: {site.home} && chmod go-w {site.home} (contrib/setup.sh does)") in report.checks


# What every push pays for: a hook's modules are imported anew at each push. Neither hook may
# need SQLite (the git account cannot read the store) or click; post-receive only hands the
# record over, so the checks' modules, pygit2 and the YAML parser stay out of it too.
NEVER = {"sqlite3", "click", "spacehooks.state", "spacehooks.queue.jobs", "spacehooks.queue.intake"}
NOT_IN_POST = NEVER | {"pygit2", "yaml", "typing", "logging", "spacehooks.push.gate", "spacehooks.git.repo",
                       "spacehooks.push.spaceconfig", "spacehooks.push.spacekeys"}
NOT_IN_PRE = NEVER | {"spacehooks.push.buildmounts", "spacehooks.push.depfiles", "spacehooks.errors"}


def _imports_per_hook(output: str) -> list[set]:
    """The modules each hook process imported, from PYTHONPROFILEIMPORTTIME's lines (git
    passes them on as `remote:` lines; each process starts with the header line)."""
    hooks = []
    for line in output.splitlines():
        line = line.removeprefix("remote: ").strip()
        if line.startswith("import time: self"):
            hooks.append(set())
        elif line.startswith("import time:"):
            hooks[-1].add(line.rsplit("|", 1)[1].strip())
    return hooks


def test_the_push_path_imports_only_what_it_needs(site):
    site.env["PYTHONPROFILEIMPORTTIME"] = "1"
    pushed = site.push()
    assert pushed.returncode == 0, pushed.stdout
    assert "recorded" in pushed.stdout, pushed.stdout
    pre, post = _imports_per_hook(pushed.stdout)
    assert {"spacehooks.push.gate", "pygit2", "yaml"} <= pre and {"spacehooks.push.handover", "json"} <= post
    assert (sorted(pre & NOT_IN_PRE), sorted(post & NOT_IN_POST)) == ([], [])


def test_post_receive_takes_the_shared_settings_only_while_the_file_holds_them(site):
    """The server's parse is used while the settings file holds the text it parsed; an edit
    counts at the next push, before any server has run again."""
    conf = site.settings.path
    conf.write_text(conf.read_text() + "deploy_branch: live\n")
    pushed = site.push()  # main is no longer the deploy branch: nothing to hand over
    assert pushed.returncode == 0, pushed.stdout
    assert "-----> " not in pushed.stdout.replace("remote: -----> Checking", ""), pushed.stdout
    assert os.listdir(site.home / "incoming") == []
    pushed = site.as_git("git", "-C", site.work, "push", site.bare, "HEAD:refs/heads/live")
    assert "-----> Push of alice/demo at" in pushed.stdout, pushed.stdout
    assert len(os.listdir(site.home / "incoming")) == 1


def test_the_server_takes_a_record_in_as_soon_as_it_is_dropped(site, monkeypatch):
    """The worker's idle wait ends when a record arrives (the push waits for its answer),
    not when the turn is over; files that are no records do not end it."""
    from spacehooks.run import worker
    monkeypatch.setattr(worker, "IDLE_POLL", 600)
    w = worker.Worker(site.settings)
    stop = threading.Event()
    idle = threading.Thread(target=w._idle, args=(stop,))
    idle.start()
    try:
        assert site.as_git("touch", site.home / "incoming" / "junk").returncode == 0
        idle.join(2)
        assert idle.is_alive()  # still waiting: junk is no record
        site.drop({"space": "alice/demo", "repo": str(site.bare), "commit": "1" * 40, "pusher": "x", "options": {}})
        idle.join(60)
        assert not idle.is_alive()
    finally:
        stop.set()
        idle.join(10)
