"""The test servers themselves: each transport carries a hook's refusal to the pusher as
`remote:` lines, leaves refs unchanged after it, and gives hooks the pusher's identity.

A stand-in pre-receive hook is used here (refuses commits whose message says "bad"); the
spacehooks hooks are tested over the same servers in test_servers_spacehooks.py.
"""
from __future__ import annotations

import shutil

import pytest

import servers
from helpers import git, push, refs_and_objects, work_repo

STAND_IN = """#!/bin/sh
echo "identity: ssh=${SPACEHOOKS_PUSHER:-} gitolite=${GL_USER:-} http=${REMOTE_USER:-} gitea=${GITEA_PUSHER_NAME:-} gitlab=${GL_USERNAME:-}"
while read old new ref; do
    if git log -1 --format=%s "$new" | grep -q bad; then
        echo "refused: $ref has a bad commit"
        exit 1
    fi
done
"""


@pytest.fixture(autouse=True)
def _safe_directories(monkeypatch):
    for key, value in servers.SAFE_DIRECTORY_ENV.items():
        monkeypatch.setenv(key, value)


def _install_stand_in(path):
    path.write_text(STAND_IN)
    path.chmod(0o755)


def _check_refusal(work, url, bare, env):
    before = refs_and_objects(bare)
    git("commit", "-q", "--allow-empty", "-m", "a bad commit", cwd=work)
    result = push(work, url, env=env)
    assert result.returncode != 0
    assert "remote: refused: refs/heads/main has a bad commit" in result.stdout
    assert refs_and_objects(bare) == before
    return result


@pytest.fixture(scope="module")
def ssh_server():
    base = servers.server_dir("ssh")
    user = servers.ensure_user("spacehooks-git", base / "home")
    server = servers.SSHServer(base).start()
    server.user = user
    yield server
    server.stop()
    shutil.rmtree(base)


def test_plain_ssh_forced_command_names_pusher(ssh_server, tmp_path):
    base = ssh_server.base
    key = servers.keypair(tmp_path / "alice_key")
    wrapper = servers.CONTRIB / "ssh" / "spacehooks-git-shell"
    ssh_server.authorize("spacehooks-git", key.with_suffix(".pub"), f'command="{wrapper} alice",restrict')
    bare = base / "home" / "spaces" / "demo.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    _install_stand_in(bare / "hooks" / "pre-receive")
    servers.chown_tree(base / "home", ssh_server.user)
    env = {"GIT_SSH_COMMAND": ssh_server.ssh_command(key)}
    work = work_repo(tmp_path / "work", {"README.md": "hi\n"})

    good = push(work, ssh_server.url("spacehooks-git", "~/spaces/demo.git"), env=env)
    assert good.returncode == 0, good.stdout
    assert "remote: identity: ssh=alice gitolite= http= gitea= gitlab=" in good.stdout
    assert git("rev-parse", "main", cwd=bare).stdout == git("rev-parse", "HEAD", cwd=work).stdout

    _check_refusal(work, ssh_server.url("spacehooks-git", "~/spaces/demo.git"), bare, env)


def test_forced_command_refuses_a_shell(ssh_server, tmp_path):
    key = servers.keypair(tmp_path / "carol_key")
    wrapper = servers.CONTRIB / "ssh" / "spacehooks-git-shell"
    ssh_server.authorize("spacehooks-git", key.with_suffix(".pub"), f'command="{wrapper} carol",restrict')
    ssh = ssh_server.ssh_command(key).split()
    login = servers.run([*ssh, "spacehooks-git@127.0.0.1"], check=False)
    assert login.returncode == 1
    assert "Hi carol! This account only serves git (git push / git clone); there is no shell." in login.stdout
    command = servers.run([*ssh, "spacehooks-git@127.0.0.1", "cat /etc/passwd"], check=False)
    assert command.returncode != 0
    assert "root:" not in command.stdout


def test_forced_command_keeps_pushes_under_repo_root(tmp_path):
    base = servers.server_dir("sshroot")
    user = servers.ensure_user("spacehooks-git2", base / "home")
    server = servers.SSHServer(base, env={"SPACEHOOKS_REPO_ROOT": str(base / "home" / "git")}).start()
    try:
        key = servers.keypair(tmp_path / "alice_key")
        wrapper = servers.CONTRIB / "ssh" / "spacehooks-git-shell"
        server.authorize("spacehooks-git2", key.with_suffix(".pub"), f'command="{wrapper} alice",restrict')
        inside = base / "home" / "git" / "alice" / "app.git"
        outside = base / "home" / "other.git"
        for bare in (inside, outside):
            git("init", "-q", "--bare", "-b", "main", str(bare))
        servers.chown_tree(base / "home", user)
        env = {"GIT_SSH_COMMAND": server.ssh_command(key)}
        work = work_repo(tmp_path / "work", {"a": "1\n"})
        # scp-style relative paths are resolved under the repo root
        relative = push(work, "spacehooks-git2@127.0.0.1:alice/app.git", env=env)
        assert relative.returncode == 0, relative.stdout
        refused = push(work, server.url("spacehooks-git2", str(outside)), env=env)
        assert refused.returncode != 0
        assert f"spacehooks-git-shell: {outside} is outside {base / 'home' / 'git'}" in refused.stdout
        dotdot = push(work, "spacehooks-git2@127.0.0.1:alice/../../other.git", env=env)
        assert "spacehooks-git-shell: '..' is not allowed in repository paths" in dotdot.stdout
        assert git("for-each-ref", cwd=outside).stdout == ""
    finally:
        server.stop()
        shutil.rmtree(base)


@pytest.fixture(scope="module")
def gitolite():
    base = servers.server_dir("gitolite")
    ssh = servers.SSHServer(base).start()
    gl = servers.Gitolite(base, ssh).setup()
    _install_stand_in(gl.local_code / "hooks" / "common" / "pre-receive")
    gl.compile()
    yield gl
    ssh.stop()
    shutil.rmtree(base)


def test_gitolite_common_hook_sees_gl_user(gitolite, tmp_path):
    env = {"GIT_SSH_COMMAND": gitolite.ssh_command("bob")}
    work = work_repo(tmp_path / "work", {"README.md": "hi\n"})
    good = push(work, gitolite.url("bob/demo"), env=env)
    assert good.returncode == 0, good.stdout
    assert "remote: identity: ssh= gitolite=bob http= gitea= gitlab=" in good.stdout
    bare = gitolite.repositories / "bob" / "demo.git"
    assert git("rev-parse", "main", cwd=bare).stdout == git("rev-parse", "HEAD", cwd=work).stdout
    _check_refusal(work, gitolite.url("bob/demo"), bare, env)


@pytest.fixture(scope="module")
def http_server():
    base = servers.server_dir("http")
    server = servers.HTTPGitServer(base, base / "git")
    (base / "git").mkdir()
    server.add_user("alice", "s3cret")
    yield server.start()
    server.stop()
    shutil.rmtree(base)


def test_http_backend_passes_remote_user(http_server, tmp_path):
    bare = http_server.project_root / "alice" / "demo.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    _install_stand_in(bare / "hooks" / "pre-receive")
    work = work_repo(tmp_path / "work", {"README.md": "hi\n"})
    good = push(work, http_server.url("alice", "alice/demo.git"))
    assert good.returncode == 0, good.stdout
    assert "remote: identity: ssh= gitolite= http=alice gitea= gitlab=" in good.stdout
    assert git("rev-parse", "main", cwd=bare).stdout == git("rev-parse", "HEAD", cwd=work).stdout
    _check_refusal(work, http_server.url("alice", "alice/demo.git"), bare, None)


def test_http_backend_refuses_anonymous_push(http_server, tmp_path):
    bare = http_server.project_root / "alice" / "anon.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    work = work_repo(tmp_path / "work", {"README.md": "hi\n"})
    result = push(work, f"http://127.0.0.1:{http_server.port}/git/alice/anon.git",
                  env={"GIT_TERMINAL_PROMPT": "0"})
    assert result.returncode != 0
    assert git("for-each-ref", cwd=bare).stdout == ""


def test_gitea_chain_runs_every_script(tmp_path):
    bare = tmp_path / "alice" / "demo.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    servers.gitea_repo(bare)
    _install_stand_in(bare / "hooks" / "pre-receive.d" / "spacehooks")
    other = bare / "hooks" / "pre-receive.d" / "gitea"
    other.write_text("#!/bin/sh\necho gitea-own-hook ran\n")
    other.chmod(0o755)
    env = servers.gitea_env("carol", "alice", "demo")
    work = work_repo(tmp_path / "work", {"README.md": "hi\n"})
    good = push(work, str(bare), env=env)
    assert good.returncode == 0, good.stdout
    assert "remote: gitea-own-hook ran" in good.stdout
    assert "remote: identity: ssh= gitolite= http= gitea=carol gitlab=" in good.stdout
    _check_refusal(work, str(bare), bare, env)


def test_gitlab_custom_hooks_chain(tmp_path):
    bare = tmp_path / "alice" / "demo.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    servers.gitlab_repo(bare)
    _install_stand_in(bare / "custom_hooks" / "pre-receive.d" / "spacehooks")
    env = servers.gitlab_env("dave", "alice/demo")
    work = work_repo(tmp_path / "work", {"README.md": "hi\n"})
    good = push(work, str(bare), env=env)
    assert good.returncode == 0, good.stdout
    assert "remote: identity: ssh= gitolite= http= gitea= gitlab=dave" in good.stdout
    _check_refusal(work, str(bare), bare, env)


def test_the_generic_wrapper_stops_once_spacehooks_has_users(tmp_path):
    # issue 13: owner rules on every route; the wrapper cannot check them, so with users
    # (access.json written by the server) only keys added by `users ssh-key add` are served
    base = servers.server_dir("sshusers")
    user = servers.ensure_user("spacehooks-git3", base / "home")
    home = base / "spacehooks-home"
    home.mkdir(parents=True)
    server = servers.SSHServer(base, env={"SPACEHOOKS_HOME": str(home)}).start()
    try:
        key = servers.keypair(tmp_path / "alice_key")
        wrapper = servers.CONTRIB / "ssh" / "spacehooks-git-shell"
        server.authorize("spacehooks-git3", key.with_suffix(".pub"), f'command="{wrapper} alice",restrict')
        bare = base / "home" / "bob" / "app.git"
        git("init", "-q", "--bare", "-b", "main", str(bare))
        servers.chown_tree(base / "home", user)
        env = {"GIT_SSH_COMMAND": server.ssh_command(key)}
        work = work_repo(tmp_path / "work", {"a": "1\n"})
        assert push(work, server.url("spacehooks-git3", str(bare)), env=env).returncode == 0  # no users yet
        (home / "access.json").write_text('{"users": {"bob": {"admin": false, "orgs": []}}, "orgs": [], "private": []}')
        git("commit", "-q", "--allow-empty", "-m", "again", cwd=work)
        refused = push(work, server.url("spacehooks-git3", str(bare)), env=env)
        assert refused.returncode != 0
        assert ("spacehooks-git-shell: this server has spacehooks users, whose keys are checked against the owner "
                "rules; ask the administrator to add this key with: spacehooks users ssh-key add alice KEYFILE"
                in refused.stdout)
        assert git("rev-parse", "main", cwd=bare).stdout != git("rev-parse", "HEAD", cwd=work).stdout
    finally:
        server.stop()
        shutil.rmtree(base)
