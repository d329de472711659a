"""The state store is shared by root (serve, worker) and the git account (post-receive):
a real push by an unprivileged unix user records its build in a store root made, while
root holds it open; secrets stay out of the git account's reach."""
import grp
import os
import shutil
import stat
import subprocess

import pytest
import yaml

import servers
from helpers import GIT_ENV, GRADIO_README, work_repo

USER = "spacehooks-perm"
GROUP = "spacehooks"


@pytest.fixture
def site():
    base = servers.server_dir("perm")
    if subprocess.run(["getent", "group", GROUP], stdout=subprocess.DEVNULL).returncode != 0:
        servers.run(["groupadd", "--system", GROUP])
    user = servers.ensure_user(USER, base / "home")
    servers.run(["usermod", "-a", "-G", GROUP, USER])
    yield base, user
    shutil.rmtree(base)


def push_as(user, work, bare, env):
    return subprocess.run(["runuser", "-u", user.pw_name, "--", "git", "-C", str(work), "push", str(bare),
                           "HEAD:refs/heads/main"], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_post_receive_as_the_git_account_records_builds_in_roots_store(site):
    from spacehooks import config, state
    base, user = site
    repo_root = base / "home" / "git"
    conf = base / "etc" / "config.yaml"
    conf.parent.mkdir()
    conf.write_text(yaml.safe_dump({"repo_root": str(repo_root), "build": {"push_log_seconds": 0}}))
    home = base / "state"
    settings = config.load(path=conf, home=home)
    state.open(settings).close()  # root makes the store, as `spacehooks serve` does on a new server
    state.write_secret(home, "alice/demo", "TOKEN", "s3cret")
    python = servers.python_for_git_users(base / "venv")
    env = {**os.environ, **GIT_ENV, "SPACEHOOKS_CONFIG": str(conf), "SPACEHOOKS_HOME": str(home),
           "HOME": user.pw_dir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    bare = repo_root / "alice" / "demo.git"
    bare.mkdir(parents=True)
    servers.run(["git", "init", "-q", "--bare", "-b", "main", bare])
    servers.run([python, "-m", "spacehooks", "install", bare], env=env)
    work = work_repo(base / "home" / "work", {"README.md": GRADIO_README, "app.py": "import gradio\n"})
    servers.chown_tree(base / "home", user)

    gid = grp.getgrnam(GROUP).gr_gid
    info = home.stat()
    assert (info.st_gid, stat.S_IMODE(info.st_mode) & 0o2070) == (gid, 0o2070)
    first = push_as(user, work, bare, env)
    assert first.returncode == 0, first.stdout
    assert "remote: -----> Build #1 queued for alice/demo at " in first.stdout

    # root holds the store open (the -wal and -shm files are root's now) while the git account pushes
    st = state.open(settings)
    try:
        servers.run(["runuser", "-u", USER, "--", "git", "-C", work, "commit", "-q", "--allow-empty", "-m", "two"],
                    env=env)
        second = push_as(user, work, bare, env)
        assert second.returncode == 0, second.stdout
        assert "remote: -----> Build #2 queued for alice/demo at " in second.stdout
        assert [b["status"] for b in st.builds("alice/demo")] == ["queued", "superseded"]
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            info = (home / name).stat()
            assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (gid, 0o660), name
    finally:
        st.close()
    secret = home / "secrets" / "alice" / "demo" / "TOKEN"
    assert (stat.S_IMODE(secret.stat().st_mode), secret.stat().st_uid) == (0o600, 0)
    denied = subprocess.run(["runuser", "-u", USER, "--", "cat", str(secret)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert denied.returncode == 1 and "Permission denied" in denied.stdout
