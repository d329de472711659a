"""The plain SSH server's keys follow the owner rules (issue 13, item 1): `spacehooks users
ssh-key add` writes the forced command naming the key's user, and through a real sshd that key
may push only to Spaces its user manages and clone only what it may read."""
from __future__ import annotations

import shutil
import subprocess

import pytest

import servers
from helpers import git, push, refs_and_objects, work_repo
from test_servers_spacehooks import GOOD_FILES, Site, _safe_directories, python  # noqa: F401 - fixtures


def spacehooks(site, *args):
    result = subprocess.run([site.python, "-m", "spacehooks", *args], env={**servers.os.environ, **site.env()},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert result.returncode == 0, result.stdout
    return result.stdout


@pytest.fixture
def ssh_site(tmp_path, python):  # noqa: F811 - the fixture imported above
    base = servers.server_dir("sh-ssh-owners")
    user = servers.ensure_user("spacehooks-ssh", base / "home")
    root = base / "home" / "git"
    site = Site(base, root, user, python)
    server = servers.SSHServer(base, env={**site.env()}).start()
    try:
        for space in ("alice/demo", "bob/tool", "acme/app", "alice/hidden"):
            bare = root / f"{space}.git"
            git("init", "-q", "--bare", "-b", "main", str(bare))
        site.install(root)
        servers.chown_tree(base / "home", user)
        spacehooks(site, "users", "add", "alice")
        spacehooks(site, "users", "add", "bob")
        spacehooks(site, "orgs", "add", "acme")
        spacehooks(site, "orgs", "member", "add", "acme", "alice")
        from spacehooks import state
        st = state.open(site.settings)
        st.ensure_space("alice/hidden", root / "alice" / "hidden.git")
        st.close()
        spacehooks(site, "visibility", "alice/hidden", "private")
        keys = {}
        for who in ("alice", "bob"):
            keys[who] = servers.keypair(tmp_path / f"{who}_key")
            out = spacehooks(site, "users", "ssh-key", "add", who, str(keys[who].with_suffix(".pub")),
                             "--authorized-keys", str(server.keys_dir / "spacehooks-ssh"))
            assert out == f"key added for {who} in {server.keys_dir / 'spacehooks-ssh'}\n"
        line = (server.keys_dir / "spacehooks-ssh").read_text().splitlines()[0]
        assert line.startswith(f'command="{python} -m spacehooks.sshgate alice",restrict ssh-ed25519 ')
        yield site, server, keys, root
    finally:
        server.stop()
        shutil.rmtree(base)


def test_keys_push_and_clone_only_what_their_user_may(ssh_site, tmp_path):
    site, server, keys, root = ssh_site
    url = "spacehooks-ssh@127.0.0.1:{}.git"

    def env(who):
        return {"GIT_SSH_COMMAND": server.ssh_command(keys[who])}
    work = work_repo(tmp_path / "work", GOOD_FILES)
    # her own Space and her organisation's: accepted, recorded with her name
    for space in ("alice/demo", "acme/app"):
        result = push(work, url.format(space), env=env("alice"))
        assert result.returncode == 0, result.stdout
        assert [b["pusher"] for b in site.builds(space)] == ["alice"]
    from spacehooks import state
    st = state.open(site.settings)
    try:
        assert [(r["actor"], r["credential"], r["action"], r["space_id"]) for r in st.audit()][1:] == [
            ("alice", "git", "push", "alice/demo"), ("alice", "git", "push", "acme/app")]
    finally:
        st.close()
    # another user's Space: refused before git runs, nothing changes
    before = refs_and_objects(root / "bob" / "tool.git")
    refused = push(work, url.format("bob/tool"), env=env("alice"))
    assert refused.returncode != 0
    assert "spacehooks: alice may not push to bob/tool: it belongs to bob" in refused.stdout
    assert refs_and_objects(root / "bob" / "tool.git") == before
    # bob reads public Spaces, but a private one is not there for him, and he cannot push to it
    clone = subprocess.run(["git", "clone", "-q", url.format("alice/demo"), str(tmp_path / "c1")],
                           env={**servers.os.environ, **env("bob")}, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
    assert clone.returncode == 0, clone.stdout
    for command in (["git", "clone", "-q", url.format("alice/hidden"), str(tmp_path / "c2")],):
        hidden = subprocess.run(command, env={**servers.os.environ, **env("bob")}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=120)
        assert hidden.returncode != 0
        assert "spacehooks: repository alice/hidden not found" in hidden.stdout
    assert "spacehooks: repository alice/hidden not found" in push(work, url.format("alice/hidden"), env=env("bob")).stdout
    # paths outside the repositories and shells are refused
    escape = push(work, "spacehooks-ssh@127.0.0.1:../../etc.git", env=env("alice"))
    assert escape.returncode != 0 and "give OWNER/NAME.git" in escape.stdout
