"""Uploads without git (issue 13, item 3): upload_file, upload_folder, create_commit and the
`hf upload` command of the unmodified huggingface_hub client make a commit on the Space's
deploy branch that goes through the Space's own gate and queues a build like a push; a
refusal comes back as the client's error, and nothing else reaches the repository."""
import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError

from gateway_support import *  # noqa: F401,F403 - fixtures
from helpers import refs_and_objects
from test_hubapi import hub, people  # noqa: F401 - fixtures

README = "---\ntitle: Site\nsdk: static\n---\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], check=True, stdout=subprocess.PIPE,
                          text=True, timeout=30).stdout.strip()


@pytest.fixture
def site(hub):
    gw, tokens = hub
    HfApi(endpoint=gw.url, token=tokens["alice"]).create_repo("alice/site", repo_type="space", space_sdk="static")
    return gw, tokens, Path(gw.settings["repo_root"]) / "alice" / "site.git"


def commit_body(*lines: dict) -> bytes:
    return b"\n".join(json.dumps(line).encode() for line in lines)


def add(path: str, content: bytes) -> dict:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}}


HEADER = {"key": "header", "value": {"summary": "raw"}}


def test_uploads_commit_through_the_gate_and_queue_a_build(site, tmp_path):
    gw, tokens, repo = site
    api = HfApi(endpoint=gw.url, token=tokens["alice"])
    folder = tmp_path / "site"
    (folder / "assets").mkdir(parents=True)
    (folder / "README.md").write_text(README)
    (folder / "index.html").write_text("<p>hi</p>\n")
    (folder / "assets" / "a.css").write_text("p{}\n")
    first = api.upload_folder(folder_path=str(folder), repo_id="alice/site", repo_type="space",
                              commit_message="first upload")
    tip = git(repo, "rev-parse", "main")
    assert first.oid == tip
    assert git(repo, "ls-tree", "-r", "--name-only", "main").split() == ["README.md", "assets/a.css", "index.html"]
    assert git(repo, "log", "-1", "--format=%an|%s", "main") == "alice|first upload"
    builds = gw.state.builds("alice/site")
    assert [(b["commit"], b["pusher"]) for b in builds] == [(tip, "alice")]
    # and it deploys like a push: the worker builds it, the gateway serves it
    from spacehooks import worker
    while worker.Worker(gw.settings).run_once():
        pass
    time.sleep(1.05)  # past the gateway's one-second snapshot
    served = requests.get(gw.url + "/", headers={"Host": f"{gw.host('alice/site')}:{gw.port}"}, timeout=30)
    assert (served.status_code, served.text) == (200, "<p>hi</p>\n")

    second = api.upload_file(path_or_fileobj=b"<p>new</p>\n", path_in_repo="index.html", repo_id="alice/site",
                             repo_type="space")
    assert git(repo, "show", "main:index.html") == "<p>new</p>"
    assert git(repo, "rev-parse", "main^") == tip and second.oid == git(repo, "rev-parse", "main")
    api.create_commit("alice/site", [CommitOperationDelete("assets/"), CommitOperationAdd("b.txt", b"b\n")],
                      commit_message="tidy", repo_type="space", parent_commit=second.oid)
    assert git(repo, "ls-tree", "-r", "--name-only", "main").split() == ["README.md", "b.txt", "index.html"]
    assert len(gw.state.builds("alice/site")) == 3

    # a parent that is no longer the tip: 412, nothing committed
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit("alice/site", [CommitOperationAdd("c.txt", b"c\n")], commit_message="late",
                          repo_type="space", parent_commit=tip)
    assert err.value.response.status_code == 412
    # deleting what is not there: the client's EntryNotFound
    with pytest.raises(HfHubHTTPError) as err:
        api.delete_file("nothere.txt", "alice/site", repo_type="space")
    assert err.value.response.status_code == 404
    actions = [(r["actor"], r["action"], r["detail"][:7]) for r in gw.state.audit(space_id="alice/site")]
    assert ("alice", "upload", "refused") in actions and sum(a[1] == "upload" for a in actions) == 5


def test_the_gate_refuses_an_upload_as_it_refuses_a_push(site):
    gw, tokens, repo = site
    api = HfApi(endpoint=gw.url, token=tokens["alice"])
    with pytest.raises(HfHubHTTPError) as err:  # README alone: the gate wants the app file
        api.upload_file(path_or_fileobj=README.encode(), path_in_repo="README.md", repo_id="alice/site",
                        repo_type="space")
    assert err.value.response.status_code == 422
    assert ' !     README.md: "app_file" (default index.html for sdk static) does not exist in the repository;' \
        in err.value.response.json()["error"]
    api.create_commit("alice/site", [CommitOperationAdd("README.md", README.encode()),
                                     CommitOperationAdd("index.html", b"<p>hi</p>")], commit_message="site",
                      repo_type="space")
    before = refs_and_objects(repo)
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"---\ntitle: x\nsdk: fortran\n---\n", path_in_repo="README.md",
                        repo_id="alice/site", repo_type="space")
    assert err.value.response.status_code == 422
    assert "sdk" in str(err.value) and "fortran" in str(err.value)
    leaked = b"TOKEN = '" + b"hf_" + b"a1B2c3D4e5" * 3 + b"abcd'\n"
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=leaked, path_in_repo="config.py", repo_id="alice/site", repo_type="space")
    assert err.value.response.status_code == 422
    assert "config.py:1: looks like a Hugging Face token (hf_a1B…)" in err.value.response.json()["error"]
    assert refs_and_objects(repo)[0] == before[0]  # the branch did not move
    assert len(gw.state.builds("alice/site")) == 1


def test_uploads_follow_the_owner_rules(site):
    gw, tokens, repo = site
    url = f"{gw.url}/api/spaces/alice/site/commit/main"
    body = commit_body(HEADER, add("README.md", README.encode()))
    before = refs_and_objects(repo)
    answers = {who: requests.post(url, data=body, timeout=30, headers={"Authorization": f"Bearer {tokens[who]}"}
                                  if who else {}).status_code for who in ("bob", "alice-read", None)}
    assert answers == {"bob": 403, "alice-read": 403, None: 401}
    bad = requests.post(url, data=body, timeout=30, headers={"Authorization": "Bearer shk_0000000000_" + "x" * 40})
    assert bad.status_code == 401
    gw.state.set_private("alice/site", True)
    time.sleep(1.05)  # past the gateway's one-second snapshot
    assert requests.post(url, data=body, timeout=30,
                         headers={"Authorization": f"Bearer {tokens['bob']}"}).status_code == 404
    with pytest.raises(HfHubHTTPError):
        HfApi(endpoint=gw.url, token=tokens["bob"]).upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/site", repo_type="space")
    assert refs_and_objects(repo) == before and gw.state.builds("alice/site") == []


@pytest.mark.parametrize("path", ["../escape.txt", ".git/hooks/pre-receive", "a/.GIT/config", "a//b", "/abs",
                                  "a/./b", "nul\0.txt"])
def test_upload_paths_are_checked_as_tree_names(site, path):
    gw, tokens, repo = site
    before = refs_and_objects(repo)
    answer = requests.post(f"{gw.url}/api/spaces/alice/site/commit/main", timeout=30,
                           data=commit_body(HEADER, add(path, b"x")),
                           headers={"Authorization": f"Bearer {tokens['alice']}"})
    assert answer.status_code == 400, answer.text
    assert "tree entry" in answer.json()["error"]
    assert refs_and_objects(repo) == before


def test_upload_limits(site):
    gw, tokens, repo = site
    gw.settings._values["api.upload_max_files"] = 2
    gw.settings._values["api.upload_max_bytes"] = 4096
    auth = {"Authorization": f"Bearer {tokens['alice']}"}
    url = f"{gw.url}/api/spaces/alice/site/commit/main"
    many = requests.post(url, headers=auth, timeout=30, data=commit_body(HEADER, *(add(f"f{i}", b"x") for i in range(3))))
    assert many.status_code == 400 and "at most 2" in many.json()["error"]
    big = requests.post(url, headers=auth, timeout=30, data=commit_body(HEADER, add("big", b"x" * 8000)))
    assert big.status_code == 413
    other = requests.post(f"{gw.url}/api/spaces/alice/site/commit/dev", headers=auth, timeout=30,
                          data=commit_body(HEADER, add("a", b"x")))
    assert other.status_code == 400 and "deploy branch main" in other.json()["error"]
    assert gw.state.builds("alice/site") == []


def test_hf_upload_command(site, tmp_path):
    gw, tokens, repo = site
    folder = tmp_path / "cli-site"
    folder.mkdir()
    (folder / "README.md").write_text(README)
    (folder / "index.html").write_text("<p>cli</p>\n")
    hf = Path(sys.executable).parent / "hf"
    env = {"PATH": f"{hf.parent}:/usr/bin:/bin", "HF_ENDPOINT": gw.url, "HF_TOKEN": tokens["alice"],
           "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    run = subprocess.run([str(hf), "upload", "alice/site", str(folder), ".", "--repo-type", "space", "--commit-message", "from hf"], env=env, timeout=120,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert run.returncode == 0, run.stdout
    assert git(repo, "log", "-1", "--format=%an|%s", "main") == "alice|from hf"
    assert git(repo, "ls-tree", "--name-only", "main").split() == ["README.md", "index.html"]
    env["HF_TOKEN"] = tokens["bob"]
    refused = subprocess.run([str(hf), "upload", "alice/site", str(folder / "index.html"), "x.html",
                              "--repo-type", "space"], env=env, timeout=120,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert refused.returncode != 0 and "bob may not change alice/site" in refused.stdout
