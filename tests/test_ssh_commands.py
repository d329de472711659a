"""SSH commands for authors (issue 13, item 6) through a real sshd and the same forced command
that takes pushes: each key's user acts on what they may only, and the git account cannot
act as anyone by writing to the server's socket itself or by editing authorized_keys."""
from __future__ import annotations

import grp
import shlex
import subprocess

import pytest
import yaml

import servers
from gateway_support import LoopThread, free_port
from spacehooks import config
from spacehooks.admin import spaces as admin
from spacehooks import state as state_mod
from test_servers_spacehooks import python  # noqa: F401 - fixture
from test_ssh_owner_rules import ssh_site  # noqa: F401 - fixture


@pytest.fixture
def commands(ssh_site):
    site, server, keys, root = ssh_site
    data = yaml.safe_load(site.config.read_text())
    port = free_port()
    data["ssh"] = {"auth_log": str(server.log)}
    data["gateway"] = {"public_url": f"http://{{host}}:{port}", "listen": f"127.0.0.1:{port}"}
    site.config.write_text(yaml.safe_dump(data))
    settings = config.load(path=site.config, home=site.home)
    st = state_mod.open(settings)
    for space in ("alice/demo", "bob/tool"):
        st.ensure_space(space, root / f"{space}.git")
    st.close()
    # the gateway answers SSH commands when ssh.auth_log is set, as `spacehooks serve` runs it
    from spacehooks.gateway import serve
    from spacehooks.gateway.app import make_app
    loops = LoopThread()
    listening = loops.run(serve.listen(settings, make_app(settings), "127.0.0.1", port, shutdown_timeout=1))
    try:
        yield site, server, keys, root, settings
    finally:
        loops.run(listening.close())
        loops.stop()


def ssh(server, key, *words, stdin: str = ""):
    return subprocess.run([*shlex.split(server.ssh_command(key)), "spacehooks-ssh@127.0.0.1", *words],
                          input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)


def test_each_key_acts_on_its_users_spaces_only(commands):
    site, server, keys, root, settings = commands
    alice, bob = keys["alice"], keys["bob"]
    assert "secrets set OWNER/NAME KEY" in ssh(server, alice, "help").stdout
    assert ssh(server, alice, "spaces").stdout.split() == ["alice/demo", "alice/hidden", "bob/tool"]
    assert ssh(server, bob, "spaces").stdout.split() == ["alice/demo", "bob/tool"]

    done = ssh(server, alice, "secrets", "set", "alice/demo", "API_KEY", stdin="s3cr3t\n")
    assert (done.returncode, done.stdout) == (0, "alice/demo: secret API_KEY set\n")
    assert admin.secret_list(settings, "alice/demo") == ["API_KEY"]
    assert ssh(server, alice, "secrets", "list", "alice/demo").stdout == "API_KEY\n"
    refused = ssh(server, alice, "secrets", "set", "bob/tool", "K", stdin="x")
    assert refused.returncode == 1
    assert refused.stderr == "alice may not secrets set bob/tool: it belongs to bob\n"
    assert admin.secret_list(settings, "bob/tool") == []
    assert ssh(server, bob, "secrets", "unset", "alice/demo", "API_KEY").stderr == \
        "bob may not secrets unset alice/demo: it belongs to alice\n"
    assert admin.secret_list(settings, "alice/demo") == ["API_KEY"]
    assert ssh(server, alice, "secrets", "unset", "alice/demo", "API_KEY").returncode == 0
    assert admin.secret_list(settings, "alice/demo") == []

    log = settings.home / "logs" / "run" / "alice" / "demo.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    assert ssh(server, alice, "logs", "alice/demo", "3").stdout == "line 47\nline 48\nline 49\n"
    assert ssh(server, bob, "logs", "alice/demo").stderr == "bob may not logs alice/demo: it belongs to alice\n"
    assert ssh(server, bob, "status", "alice/hidden").stderr == "Space alice/hidden not found\n"
    assert ssh(server, alice, "status", "alice/hidden").stdout.startswith("alice/hidden: ")
    assert ssh(server, bob, "restart", "alice/demo").stderr == "bob may not restart alice/demo: it belongs to alice\n"
    restart = ssh(server, alice, "restart", "alice/demo")
    assert restart.returncode == 1 and "alice/demo has no successful build yet" in restart.stderr
    st = state_mod.open(settings)
    actions = [(r["actor"], r["credential"], r["action"]) for r in st.audit(space_id="alice/demo")]
    st.close()
    assert actions == [("alice", "key", "secret-set"), ("alice", "key", "secret-unset")]


def test_the_git_account_cannot_act_as_another_user(commands, tmp_path):
    site, server, keys, root, settings = commands
    git_user = servers.ensure_user("spacehooks-ssh", site.home.parent / "home")
    # straight to the server's socket, as the git account, claiming to be bob
    forged = subprocess.run([site.python, "-c", "import sys; from spacehooks import sshgate; "
                             "print(sshgate.ask(sys.argv[1], 'bob', ['secrets', 'set', 'bob/tool', 'K'], 'x'))",
                             str(settings.home)], user=git_user.pw_uid, group=git_user.pw_gid,
                            extra_groups=[grp.getgrnam("spacehooks").gr_gid], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=60, cwd="/")
    assert "this command did not come through an SSH login" in forged.stdout, forged.stdout
    # a key file edited by the git account: alice's key line now names bob
    keys_file = server.keys_dir / "spacehooks-ssh"
    keys_file.write_text(keys_file.read_text().replace("sshgate alice", "sshgate bob", 1))
    relabelled = ssh(server, keys["alice"], "secrets", "set", "bob/tool", "K", stdin="x")
    assert "this key belongs to another user than its authorized_keys line says" in relabelled.stderr
    # a key the git account added itself, for bob
    own = servers.keypair(tmp_path / "planted")
    line = keys_file.read_text().splitlines()[1].split(" ssh-ed25519 ")[0]
    with open(keys_file, "a") as fh:
        fh.write(f"{line} {own.with_suffix('.pub').read_text().strip()}\n")
    planted = ssh(server, own, "secrets", "set", "bob/tool", "K", stdin="x")
    assert "this key was not added with `spacehooks users ssh-key add`" in planted.stderr, planted
    assert admin.secret_list(settings, "bob/tool") == []


def test_a_login_name_cannot_forge_the_line_that_names_a_key(tmp_path):
    # sshd logs the name a client sends as it is, inside its own lines: only whole lines count
    from spacehooks.admin import sshcommands
    log = tmp_path / "sshd.log"
    log.write_bytes(b"Accepted publickey for git from 127.0.0.1 port 5555 ssh2: ED25519 SHA256:real+key=\n"
                    b"Connection closed by invalid user x Accepted publickey for git from 127.0.0.1 port 5555 "
                    b"ssh2: ED25519 SHA256:victim+key= 127.0.0.1 port 6666 [preauth]\n"
                    b"Nov 29 10:00:00 host sshd[42]: Accepted publickey for git from 127.0.0.1 port 7777 ssh2: "
                    b"ED25519 SHA256:other+key=\n")
    assert sshcommands.logged_key(log, "127.0.0.1", 5555) == "SHA256:real+key="
    assert sshcommands.logged_key(log, "127.0.0.1", 7777) == "SHA256:other+key="
