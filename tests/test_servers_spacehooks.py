"""spacehooks installed on real git servers: plain SSH (forced command), gitolite3 (LOCAL_CODE
common hooks), smart HTTP (nginx + fcgiwrap + git-http-backend), and the hook chains of
Gitea and GitLab. In each: a good Space is accepted and its build records who pushed; a bad
one is refused with the gate's message as `remote:` lines and the refs stay as they were.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import servers
from helpers import GRADIO_README, git, push, refs_and_objects, work_repo

REJECTED = " !     Sorry, your push was rejected during Space verification:"
BAD_COLOR = ('README.md:4: "colorFrom" must be one of [red, yellow, green, blue, indigo, purple, pink, gray]'
             ' (found "orange")')
GOOD_FILES = {"README.md": GRADIO_README, "app.py": "import gradio\n"}


@pytest.fixture(autouse=True)
def _safe_directories(monkeypatch):
    for key, value in servers.SAFE_DIRECTORY_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def python():
    """The interpreter the installed hooks run (git accounts must be able to execute it)."""
    base = servers.server_dir("venv")
    yield servers.python_for_git_users(base / "venv")
    shutil.rmtree(base)


class Site:
    """A spacehooks configuration the git user can read, with root's state folder (as
    contrib/setup.sh makes it): the git user, in the group `spacehooks`, only drops push records."""

    def __init__(self, base: Path, repo_root: Path, user=None, python=sys.executable):
        from spacehooks import config, state
        self.python = python
        self.config = base / "etc" / "config.yaml"
        self.home = base / "state"
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump({"repo_root": str(repo_root), "build": {"push_log_seconds": 0}}))
        if user is not None:
            if subprocess.run(["getent", "group", "spacehooks"], stdout=subprocess.DEVNULL).returncode != 0:
                servers.run(["groupadd", "--system", "spacehooks"])
            servers.run(["usermod", "-a", "-G", "spacehooks", user.pw_name])
        self.settings = config.load(path=self.config, home=self.home)
        state.open(self.settings).close()  # root makes the state folder, as `spacehooks serve` does

    def env(self) -> dict:
        return {"SPACEHOOKS_CONFIG": str(self.config), "SPACEHOOKS_HOME": str(self.home)}

    def install(self, *paths, layout="auto", command="install") -> str:
        result = subprocess.run([self.python, "-m", "spacehooks", command, "--layout", layout, *map(str, paths)],
                                env={**servers.os.environ, **self.env()}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert result.returncode == 0, result.stdout
        return result.stdout

    def builds(self, space_id: str) -> list[dict]:
        """The builds the server queued, once it has taken in what the git user recorded (as
        the loop of `spacehooks serve` does)."""
        from spacehooks import state
        from spacehooks.queue import intake
        st = state.open(self.settings)
        try:
            intake.take_all(self.settings, st)
            rows = st.conn.execute("SELECT * FROM builds WHERE space_id = ? ORDER BY id", (space_id,)).fetchall()
        finally:
            st.close()
        return [dict(r) for r in rows]


def remote_lines(result) -> list[str]:
    return [line.removeprefix("remote: ").rstrip() for line in result.stdout.splitlines()
            if line.startswith("remote: ")]


def check_space(site, work_dir, url, bare, space_id, pusher, env=None, spooled=False):
    """The three behaviours every transport must show. `spooled`: the hooks run as a git
    account, which hands the server a push record (no server runs here to take it in yet)."""
    work = work_repo(work_dir, GOOD_FILES)
    good = push(work, url, env=env)
    assert good.returncode == 0, good.stdout
    assert any("all checks passed" in line for line in remote_lines(good)), good.stdout
    head = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    handed = f"-----> Push of {space_id} at {head[:12]} recorded" if spooled else f"-----> Build #1 queued for {space_id} at {head[:12]}"
    assert handed in remote_lines(good), good.stdout
    assert git("rev-parse", "main", cwd=bare).stdout == git("rev-parse", "HEAD", cwd=work).stdout
    builds = site.builds(space_id)
    assert [(b["commit"], b["pusher"]) for b in builds] == [(git("rev-parse", "HEAD", cwd=work).stdout.strip(), pusher)]

    before = refs_and_objects(bare)
    work_repo(work, {"README.md": GRADIO_README.replace("colorFrom: blue", "colorFrom: orange")}, "orange")
    bad = push(work, url, env=env)
    assert bad.returncode != 0
    lines = remote_lines(bad)
    assert REJECTED in lines, bad.stdout
    assert f" !     {BAD_COLOR}" in lines, bad.stdout
    assert refs_and_objects(bare) == before
    assert len(site.builds(space_id)) == 1


def test_plain_ssh(tmp_path, python):
    base = servers.server_dir("sh-ssh")
    user = servers.ensure_user("spacehooks-ssh", base / "home")
    root = base / "home" / "git"
    site = Site(base, root, user, python)
    server = servers.SSHServer(base, env={"SPACEHOOKS_REPO_ROOT": str(root)}).start()
    try:
        key = servers.keypair(tmp_path / "alice_key")
        wrapper = servers.CONTRIB / "ssh" / "spacehooks-git-shell"
        server.authorize("spacehooks-ssh", key.with_suffix(".pub"), f'command="{wrapper} alice",restrict')
        bare = root / "alice" / "demo.git"
        git("init", "-q", "--bare", "-b", "main", str(bare))
        assert "installed pre-receive, installed post-receive" in site.install(root)
        servers.chown_tree(base / "home", user)
        check_space(site, tmp_path / "work", "spacehooks-ssh@127.0.0.1:alice/demo.git", bare, "alice/demo", "alice",
                    env={"GIT_SSH_COMMAND": server.ssh_command(key)}, spooled=True)
    finally:
        server.stop()
        shutil.rmtree(base)


def test_gitolite(tmp_path, python):
    base = servers.server_dir("sh-gitolite")
    ssh = servers.SSHServer(base).start()
    try:
        gl = servers.Gitolite(base, ssh, user="spacehooks-gl2").setup()
        site = Site(base, gl.repositories, gl.account, python)
        # gitolite's rc ships LOCAL_CODE commented out: install switches it on
        rc = gl.home / ".gitolite.rc"
        rc.write_text(rc.read_text().replace('    LOCAL_CODE                =>  "$ENV{HOME}/local",',
                                             '    # LOCAL_CODE                =>  "$ENV{HOME}/local",'))
        previous = gl.local_code / "hooks" / "common" / "pre-receive"
        previous.write_text("#!/bin/sh\necho site hook ran for $GL_REPO\n")
        previous.chmod(0o755)
        servers.chown_tree(gl.home, gl.account)
        out = site.install(gl.home)
        assert out == (f"{gl.home}: enabled LOCAL_CODE in .gitolite.rc, kept the previous pre-receive"
                       " (runs first, as pre-receive.spacehooks-chained), installed pre-receive,"
                       " installed post-receive, enabled push options, enabled git's checks of received objects (gitolite layout)\n")
        assert site.install(gl.home) == f"{gl.home}: unchanged (gitolite layout)\n"
        assert (gl.local_code / "hooks" / "common" / "pre-receive").stat().st_uid == gl.account.pw_uid
        env = {"GIT_SSH_COMMAND": gl.ssh_command("bob")}
        check_space(site, tmp_path / "work", gl.url("bob/demo"), gl.repositories / "bob" / "demo.git",
                    "bob/demo", "bob", env=env, spooled=True)

        # uninstall puts the site's own hook back; the gate no longer runs. Stale links: 3 repos
        # (gitolite-admin, testing, bob/demo) x (post-receive, pre-receive.spacehooks-chained)
        out = site.install(gl.home, command="uninstall")
        assert out == (f"{gl.home}: removed pre-receive, restored the previous pre-receive, removed post-receive,"
                       " removed 6 stale hook links (gitolite layout)\n")
        work = tmp_path / "work2"
        work_repo(work, {"README.md": GRADIO_README.replace("colorFrom: blue", "colorFrom: orange")})
        result = push(work, gl.url("bob/other"), env=env)
        assert result.returncode == 0, result.stdout
        assert "remote: site hook ran for bob/other" in result.stdout
        assert "Space verification" not in result.stdout
    finally:
        ssh.stop()
        shutil.rmtree(base)


def test_smart_http(tmp_path):
    base = servers.server_dir("sh-http")
    root = base / "git"
    site = Site(base, root)
    server = servers.HTTPGitServer(base, root)
    server.add_user("alice", "s3cret")
    server.start()
    try:
        bare = root / "alice" / "demo.git"
        git("init", "-q", "--bare", "-b", "main", str(bare))
        site.install(root)
        check_space(site, tmp_path / "work", server.url("alice", "alice/demo.git"), bare, "alice/demo", "alice")
    finally:
        server.stop()
        shutil.rmtree(base)


def test_gitea_chain(tmp_path):
    site = Site(tmp_path, tmp_path / "gitea-repos")
    bare = tmp_path / "gitea-repos" / "alice" / "demo.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    servers.gitea_repo(bare)
    assert "(gitea layout)" in site.install(bare)
    assert (bare / "hooks" / "pre-receive.d" / "spacehooks").is_file()
    # the pusher (carol) is not the owner: the Space is the repository's, the build is carol's
    check_space(site, tmp_path / "work", str(bare), bare, "alice/demo", "carol",
                env=servers.gitea_env("carol", "alice", "demo"))


def test_gitlab_custom_hooks(tmp_path):
    site = Site(tmp_path, tmp_path / "gitlab-repos")
    # Gitaly stores repositories under hashed paths; the project path comes from GL_PROJECT_PATH
    bare = tmp_path / "gitlab-repos" / "@hashed" / "6b" / "86" / "6b86b273.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    servers.gitlab_repo(bare)
    assert "(gitlab layout)" in site.install(bare)
    assert (bare / "custom_hooks" / "pre-receive.d" / "spacehooks").is_file()
    check_space(site, tmp_path / "work", str(bare), bare, "alice/demo", "dave",
                env=servers.gitlab_env("dave", "alice/demo"))
