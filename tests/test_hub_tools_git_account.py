"""Uploads and HTTPS pushes where a real deployment has them: repositories owned by an
unprivileged git account, hooks run by it, push records dropped for the root server. The
gateway (root) must make every commit, object and LFS file as that account, and the push
still goes through the hooks with the token's user as pusher."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import CommitOperationAdd, HfApi

import servers
from gateway_support import LoopThread, free_port
from helpers import git
from spacehooks import accounts, config
from spacehooks import state as state_mod
from test_servers_spacehooks import GOOD_FILES, Site, _safe_directories, python  # noqa: F401 - fixtures


@pytest.fixture
def deployment(python):  # noqa: F811 - the fixture imported above
    base = servers.server_dir("sh-hubtools")
    user = servers.ensure_user("spacehooks-hubtools", base / "home")
    root = base / "home" / "git"
    site = Site(base, root, user, python)
    bare = root / "alice" / "demo.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    site.install(root)
    servers.chown_tree(base / "home", user)
    port = free_port()
    data = yaml.safe_load(site.config.read_text())
    data["gateway"] = {"public_url": f"http://{{host}}:{port}", "listen": f"127.0.0.1:{port}"}
    site.config.write_text(yaml.safe_dump(data))
    settings = config.load(path=site.config, home=site.home)
    st = state_mod.open(settings)
    accounts.add_user(settings, st, "alice")
    token = accounts.create_token(st, "alice", "write")[1]
    st.ensure_space("alice/demo", bare)
    st.close()
    from spacehooks.gateway import serve
    from spacehooks.gateway.app import make_app
    loops = LoopThread()
    listening = loops.run(serve.listen(settings, make_app(settings), "127.0.0.1", port, shutdown_timeout=1))
    try:
        yield site, user, bare, token, f"http://127.0.0.1:{port}"
    finally:
        loops.run(listening.close())
        loops.stop()
        shutil.rmtree(base)


def owners(bare: Path) -> set:
    return {p.stat().st_uid for p in bare.rglob("*")}


def test_uploads_and_https_pushes_are_made_as_the_git_account(deployment, tmp_path):
    site, user, bare, token, url = deployment
    api = HfApi(endpoint=url, token=token)
    done = api.create_commit("alice/demo", [CommitOperationAdd(k, v.encode()) for k, v in GOOD_FILES.items()],
                             commit_message="upload", repo_type="space")
    assert git("--git-dir", str(bare), "rev-parse", "main").stdout.strip() == done.oid
    assert [(b["commit"], b["pusher"]) for b in site.builds("alice/demo")] == [(done.oid, "alice")]
    assert owners(bare) == {user.pw_uid}  # nothing in the repository is root's

    work = tmp_path / "work"
    env = {"GIT_TERMINAL_PROMPT": "0", "HOME": str(tmp_path)}
    git("clone", "-q", f"http://x:{token}@127.0.0.1:{url.rsplit(':', 1)[1]}/spaces/alice/demo", str(work), env=env)
    (work / "app.py").write_text("import gradio\nprint('v2')\n")
    git("-c", "user.name=a", "-c", "user.email=a@x", "commit", "-qam", "v2", cwd=work)
    pushed = git("push", "origin", "HEAD:main", cwd=work, env=env, check=False)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert [b["pusher"] for b in site.builds("alice/demo")] == ["alice", "alice"]
    content = os.urandom(1000)
    oid = hashlib.sha256(content).hexdigest()
    import requests
    answer = requests.put(f"{url}/spaces/alice/demo.git/info/lfs/objects/{oid}", data=content, timeout=30,
                          headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert (bare / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).read_bytes() == content
    assert owners(bare) == {user.pw_uid}
