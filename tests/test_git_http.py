"""Git over HTTPS with tokens (issue 13, item 4): real `git clone` and `git push` against the
gateway's `/spaces/OWNER/NAME(.git)` (git http-backend behind the owner rules), the push
going through the Space's own gate; and a real `git lfs push` to its LFS endpoint."""
import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from gateway_support import *  # noqa: F401,F403 - fixtures
from helpers import refs_and_objects
from spacehooks import accounts
from test_hubapi import hub, people  # noqa: F401 - fixtures

README = "---\ntitle: Site\nsdk: static\n---\n"


def git(*args, cwd=None, check=True):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd or "/tmp"), "GIT_TERMINAL_PROMPT": "0",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    run = subprocess.run(["git", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=120)
    if check:
        assert run.returncode == 0, run.stdout
    return run


def url(gw, space_id, token=None, suffix=".git"):
    auth = f"anyone:{token}@" if token else ""
    return f"http://{auth}127.0.0.1:{gw.port}/spaces/{space_id}{suffix}"


@pytest.fixture
def site(hub, tmp_path):
    gw, tokens = hub
    HfApi(endpoint=gw.url, token=tokens["alice"]).create_repo("alice/site", repo_type="space", space_sdk="static")
    repo = Path(gw.settings["repo_root"]) / "alice" / "site.git"
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README.md").write_text(README)
    (work / "index.html").write_text("<p>hi</p>\n")
    git("add", "-A", cwd=work)
    git("commit", "-qm", "first", cwd=work)
    return gw, tokens, repo, work


def test_push_and_clone_with_a_token(site, tmp_path):
    gw, tokens, repo, work = site
    pushed = git("push", url(gw, "alice/site", tokens["alice"]), "HEAD:main", cwd=work)
    assert "-----> Checking alice/site" in pushed.stdout  # the gate ran, as for any push
    tip = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    assert [(b["commit"], b["pusher"]) for b in gw.state.builds("alice/site")] == [(tip, "alice")]
    assert ("alice", "git-http-push") in [(r["actor"], r["action"]) for r in gw.state.audit(space_id="alice/site")]

    # anyone clones a public Space; a read token too; without .git as on the Hub
    git("clone", "-q", url(gw, "alice/site"), str(tmp_path / "anon"))
    assert (tmp_path / "anon" / "index.html").read_text() == "<p>hi</p>\n"
    git("clone", "-q", url(gw, "alice/site", tokens["alice-read"], suffix=""), str(tmp_path / "reader"))

    # the gate refuses over HTTPS as over SSH: nothing moves
    (work / "README.md").write_text("---\nsdk: fortran\n---\n")
    git("commit", "-qam", "bad", cwd=work)
    before = refs_and_objects(repo)
    refused = git("push", url(gw, "alice/site", tokens["alice"]), "HEAD:main", cwd=work, check=False)
    assert refused.returncode != 0 and "fortran" in refused.stdout
    assert refs_and_objects(repo)[0] == before[0]


def test_tokens_that_may_not_push_are_refused(site, tmp_path):
    gw, tokens, repo, work = site
    before = refs_and_objects(repo)
    token_id, revoked = accounts.create_token(gw.state, "alice", "write")
    assert gw.state.revoke_token(token_id)
    cases = {"bob": (tokens["bob"], "403"), "read": (tokens["alice-read"], "403"),
             "wrong": ("shk_0123456789_" + "x" * 40, "401"), "none": (None, "401"),
             "revoked": (revoked, "401")}
    for who, (token, code) in cases.items():
        run = git("push", url(gw, "alice/site", token), "HEAD:main", cwd=work, check=False)
        assert run.returncode != 0, who
        assert code in run.stdout or (code == "401" and "Authentication failed" in run.stdout) or \
            (code == "401" and "could not read Username" in run.stdout), (who, run.stdout)
    assert refs_and_objects(repo) == before and gw.state.builds("alice/site") == []


def test_private_spaces_and_the_anonymous_clone_setting(site, tmp_path):
    gw, tokens, repo, work = site
    git("push", url(gw, "alice/site", tokens["alice"]), "HEAD:main", cwd=work)
    gw.state.set_private("alice/site", True)
    time.sleep(1.05)  # past the gateway's one-second snapshot
    anon = git("clone", "-q", url(gw, "alice/site"), str(tmp_path / "a"), check=False)
    assert anon.returncode != 0 and not (tmp_path / "a" / "index.html").exists()
    stranger = git("clone", "-q", url(gw, "alice/site", tokens["bob"]), str(tmp_path / "b"), check=False)
    assert stranger.returncode != 0 and "not found" in stranger.stdout
    git("clone", "-q", url(gw, "alice/site", tokens["alice-read"]), str(tmp_path / "c"))
    gw.state.set_private("alice/site", False)
    gw.settings._values["git_http.anonymous_clone"] = False
    time.sleep(1.05)
    closed = git("clone", "-q", url(gw, "alice/site"), str(tmp_path / "d"), check=False)
    assert closed.returncode != 0 and not (tmp_path / "d" / "index.html").exists()
    git("clone", "-q", url(gw, "alice/site", tokens["bob"]), str(tmp_path / "e"))  # any user reads a public Space


def lfs_work(work: Path, content: bytes) -> str:
    git("lfs", "install", "--local", cwd=work)
    git("lfs", "track", "*.bin", cwd=work)
    (work / "model.bin").write_bytes(content)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "weights", cwd=work)
    return hashlib.sha256(content).hexdigest()


def test_git_lfs_push_stores_objects_in_the_repository(site, tmp_path):
    gw, tokens, repo, work = site
    content = os.urandom(300_000)
    oid = lfs_work(work, content)
    refused = git("lfs", "push", "--all", url(gw, "alice/site", tokens["bob"]), cwd=work, check=False)
    assert refused.returncode != 0 and "Authorization error" in refused.stdout, refused.stdout  # git-lfs on 403
    stored = repo / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    assert not stored.exists()
    git("lfs", "push", "--all", url(gw, "alice/site", tokens["alice"]), cwd=work)
    assert stored.read_bytes() == content
    assert ("alice", "lfs-upload") in [(r["actor"], r["action"]) for r in gw.state.audit(space_id="alice/site")]
    git("push", url(gw, "alice/site", tokens["alice"]), "HEAD:main", cwd=work)
    clone = tmp_path / "clone"
    git("clone", "-q", url(gw, "alice/site"), str(clone))  # anonymous: a public Space
    git("lfs", "install", "--local", cwd=clone)
    git("lfs", "pull", cwd=clone)
    assert (clone / "model.bin").read_bytes() == content


def test_the_lfs_endpoint_checks_what_it_stores(site):
    import requests
    gw, tokens, repo, work = site
    auth = {"Authorization": f"Bearer {tokens['alice']}"}
    base = f"{gw.url}/spaces/alice/site.git/info/lfs/objects"
    content = b"weights\n"
    oid = hashlib.sha256(content).hexdigest()
    wrong = requests.put(f"{base}/{'0' * 64}", data=content, headers=auth, timeout=30)
    assert wrong.status_code == 422 and "sha256" in wrong.json()["message"]
    assert not list((repo / "lfs" / "objects").rglob("*0000*"))
    assert not [p for p in (repo / "lfs" / "objects").rglob("*") if p.is_file()]  # no partial file left
    for bad in ("../../../etc/passwd", "A" * 64, "0" * 63):
        assert requests.put(f"{base}/{bad}", data=content, headers=auth, timeout=30).status_code in (404, 405)
    gw.settings._values["git_http.lfs_max_bytes"] = 4
    batch = requests.post(f"{base}/batch", headers={**auth, "Accept": "application/vnd.git-lfs+json"}, timeout=30,
                          json={"operation": "upload", "objects": [{"oid": oid, "size": len(content)},
                                                                   {"oid": "../x", "size": 1}]})
    errors = [o["error"]["message"] for o in batch.json()["objects"]]
    assert errors == [f"{len(content)} bytes is over this server's limit of 4 (setting git_http.lfs_max_bytes)",
                      "an oid is 64 lowercase hex digits (sha256)"]
    over = requests.put(f"{base}/{oid}", data=content, headers=auth, timeout=30)
    assert over.status_code == 413
    gw.settings._values["git_http.lfs_max_bytes"] = 1000
    read = {"Authorization": f"Bearer {tokens['alice-read']}"}
    assert requests.put(f"{base}/{oid}", data=content, headers=read, timeout=30).status_code == 403
    assert requests.put(f"{base}/{oid}", data=content, headers=auth, timeout=30).status_code == 200
    assert requests.get(f"{base}/{oid}", timeout=30).content == content
    # a link planted in the store is read as the repository's owner, never as the gateway's account
    other = hashlib.sha256(b"x").hexdigest()
    planted = repo / "lfs" / "objects" / other[:2] / other[2:4] / other
    planted.parent.mkdir(parents=True)
    secret = repo.parent / "root-only.txt"
    secret.write_text("root only\n")
    os.chmod(secret, 0o600)
    planted.symlink_to(secret)
    os.chown(repo / "objects", 65534, 65534)  # the repository's owner is now an unprivileged account
    followed = requests.get(f"{base}/{other}", timeout=30)
    assert followed.status_code == 404 and b"root only" not in followed.content
