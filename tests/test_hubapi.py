"""The Hub-compatible API (issue 13, item 2) driven by the unmodified huggingface_hub client,
the current release in-process and 0.25.2 in a subprocess, against a real gateway (relay in
front of the app) and a real state store."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from gateway_support import *  # noqa: F401,F403 - fixtures
from spacehooks.access import accounts

OLD_CLIENT = "0.25.2"


def people(gw):
    st, settings = gw.state, gw.settings
    for name in ("alice", "bob"):
        accounts.add_user(settings, st, name)
    accounts.add_user(settings, st, "root", admin=True)
    accounts.add_org(settings, st, "acme")
    accounts.set_member(settings, st, "acme", "alice", True)
    return {who: accounts.create_token(st, who, scope)[1]
            for who, scope in (("alice", "write"), ("bob", "write"), ("root", "write"))} | \
        {"alice-read": accounts.create_token(st, "alice", "read")[1]}


@pytest.fixture
def hub(gw, upstream):
    tokens = people(gw)
    gw.add_space("alice/app", port=upstream.port, hardware="cpu-basic", commit="a" * 40,
                 config={"sdk": "docker", "title": "App", "tags": ["demo"]})
    return gw, tokens


def test_the_current_client_reads_and_manages_a_space(hub, tmp_path):
    gw, tokens = hub
    api = HfApi(endpoint=gw.url, token=tokens["alice"])
    assert api.whoami()["name"] == "alice"
    assert [o["name"] for o in api.whoami()["orgs"]] == ["acme"]
    info = api.space_info("alice/app")
    assert (info.id, info.author, info.sha, info.sdk, info.private, info.host) == (
        "alice/app", "alice", "a" * 40, "docker", False, f"http://alice-app.localhost:{gw.port}")
    assert info.runtime.stage == "RUNNING"
    assert api.get_space_runtime("alice/app").hardware == "cpu-basic"

    url = api.create_repo("acme/tool", repo_type="space", space_sdk="static", private=True)
    assert url == f"{gw.url}/spaces/acme/tool"
    assert (Path(gw.settings["repo_root"]) / "acme" / "tool.git" / "HEAD").exists()
    api.create_repo("acme/tool", repo_type="space", space_sdk="static", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("acme/tool", repo_type="space", space_sdk="static")
    assert err.value.response.status_code == 409
    assert api.space_info("acme/tool").private is True

    api.add_space_variable("alice/app", "GREETING", "hi")
    assert {k: v.value for k, v in api.get_space_variables("alice/app").items()} == {"GREETING": "hi"}
    api.delete_space_variable("alice/app", "GREETING")
    assert api.get_space_variables("alice/app") == {}
    api.add_space_secret("alice/app", "API_KEY", "s3cr3t-value")
    assert list(api.get_space_secrets("alice/app")) == ["API_KEY"]
    assert "s3cr3t-value" not in requests.get(gw.url + "/api/spaces/alice/app/secrets", timeout=10,
                                              headers={"Authorization": f"Bearer {tokens['alice']}"}).text
    api.delete_space_secret("alice/app", "API_KEY")
    assert api.get_space_secrets("alice/app") == {}

    assert api.set_space_sleep_time("alice/app", 3600).sleep_time == 3600
    with pytest.raises(HfHubHTTPError) as err:
        api.request_space_hardware("alice/app", "a100-large")
    assert err.value.response.status_code == 403
    assert "hardware a100-large is granted by the admin; you may pick: cpu-basic" in str(err.value)
    assert api.pause_space("alice/app").stage == "PAUSED"
    assert api.request_space_hardware("alice/app", "cpu-basic").requested_hardware == "cpu-basic"
    # a restart needs a built image: the server's own reason comes back to the client
    with pytest.raises(HfHubHTTPError) as err:
        api.restart_space("alice/app")
    assert err.value.response.status_code == 400 and "alice/app has no successful build yet" in str(err.value)

    api.update_repo_settings("acme/tool", private=False, repo_type="space")
    assert api.space_info("acme/tool").private is False
    api.delete_repo("acme/tool", repo_type="space")
    with pytest.raises(RepositoryNotFoundError):
        api.space_info("acme/tool")
    assert list((Path(gw.settings.home) / "deleted").iterdir())  # the repository is kept aside

    actions = [(r["actor"], r["credential"].split(":")[0], r["action"], r["space_id"]) for r in gw.state.audit()]
    assert ("alice", "token", "create", "acme/tool") in actions
    assert ("alice", "token", "secret-set", "alice/app") in actions
    assert ("alice", "token", "hardware", "alice/app") in actions
    assert ("alice", "token", "delete", "acme/tool") in actions
    audit_cli = subprocess.run([sys.executable, "-m", "spacehooks", "audit", "--space", "alice/app"],
                               env={"SPACEHOOKS_CONFIG": str(gw.settings.path), "SPACEHOOKS_HOME": str(gw.settings.home),
                                    "PATH": "/usr/bin:/bin"}, stdout=subprocess.PIPE, text=True, timeout=60)
    assert " alice (token:" in audit_cli.stdout and " secret-set alice/app API_KEY" in audit_cli.stdout


def test_list_spaces_filters_and_pages(hub):
    gw, tokens = hub
    for i in range(5):
        gw.state.ensure_space(f"bob/s{i}", "/nonexistent")
    gw.add_space("acme/hidden", private=1)
    anonymous = HfApi(endpoint=gw.url, token=False)
    ids = [s.id for s in anonymous.list_spaces()]
    assert ids == ["alice/app", "bob/s0", "bob/s1", "bob/s2", "bob/s3", "bob/s4"]
    assert [s.id for s in anonymous.list_spaces(author="bob", limit=3)] == ["bob/s0", "bob/s1", "bob/s2"]
    assert [s.id for s in anonymous.list_spaces(search="s4")] == ["bob/s4"]
    page = requests.get(gw.url + "/api/spaces?author=bob&limit=10", timeout=10)
    assert "Link" not in page.headers
    first = requests.get(gw.url + "/api/spaces?author=bob", params={"limit": ""}, timeout=10)
    assert len(first.json()) == 5
    from spacehooks.gateway import hubapi
    hubapi.PAGE, saved = 2, hubapi.PAGE
    try:
        assert [s.id for s in anonymous.list_spaces(author="bob")] == [f"bob/s{i}" for i in range(5)]
        link = requests.get(gw.url + "/api/spaces?author=bob", timeout=10).headers["Link"]
        assert link.endswith('cursor=2>; rel="next"')
    finally:
        hubapi.PAGE = saved
    member = HfApi(endpoint=gw.url, token=tokens["alice"])
    assert "acme/hidden" in [s.id for s in member.list_spaces()]


OLD_SCRIPT = r"""
import json, sys
import huggingface_hub
from huggingface_hub import HfApi
from huggingface_hub.utils import RepositoryNotFoundError
endpoint, token = sys.argv[1], sys.argv[2]
api = HfApi(endpoint=endpoint, token=token)
out = {"version": huggingface_hub.__version__, "whoami": api.whoami()["name"]}
info = api.space_info("alice/app")
out["info"] = [info.id, info.sha, info.sdk, info.private]
out["runtime"] = api.get_space_runtime("alice/app").stage
api.create_repo("alice/old", repo_type="space", space_sdk="gradio", private=True)
out["created_private"] = api.space_info("alice/old").private
api.add_space_secret("alice/app", "K", "v")
api.add_space_variable("alice/app", "V", "1")
out["variables"] = {k: v.value for k, v in api.get_space_variables("alice/app").items()}
out["sleep"] = api.set_space_sleep_time("alice/app", 120).sleep_time
out["list"] = [s.id for s in api.list_spaces(author="alice")]
api.delete_repo("alice/old", repo_type="space")
try:
    api.space_info("alice/old")
    out["deleted"] = False
except RepositoryNotFoundError:
    out["deleted"] = True
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def old_client(tmp_path_factory):
    target = tmp_path_factory.mktemp("hf-old")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--target", str(target), f"huggingface_hub=={OLD_CLIENT}"], check=True, timeout=300,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return target


def test_an_old_client_works_too(hub, old_client):
    gw, tokens = hub
    run = subprocess.run([sys.executable, "-c", OLD_SCRIPT, gw.url, tokens["alice"]], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=120,
                         env={"PYTHONPATH": str(old_client), "PATH": "/usr/bin:/bin", "HF_HUB_DISABLE_TELEMETRY": "1",
                              "HF_HOME": str(old_client / "home")})
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out == {"version": OLD_CLIENT, "whoami": "alice", "info": ["alice/app", "a" * 40, "docker", False],
                   "runtime": "RUNNING", "created_private": True, "variables": {"V": "1"}, "sleep": 120,
                   "list": ["alice/app", "alice/old"], "deleted": True}


def test_a_space_created_through_the_api_takes_pushes_and_factory_reboots(hub, tmp_path):
    from helpers import push, work_repo
    gw, tokens = hub
    api = HfApi(endpoint=gw.url, token=tokens["alice"])
    api.create_repo("alice/site", repo_type="space", space_sdk="static")
    assert api.get_space_runtime("alice/site").stage == "NO_APP_FILE"
    readme = "---\ntitle: Site\nsdk: static\n---\n"
    work = work_repo(tmp_path / "work", {"README.md": readme, "index.html": "<p>hi</p>\n"})
    pushed = push(work, str(Path(gw.settings["repo_root"]) / "alice" / "site.git"))
    assert pushed.returncode == 0, pushed.stdout
    builds = len(gw.state.builds("alice/site"))
    assert builds == 1
    api.restart_space("alice/site", factory_reboot=True)
    queued = gw.state.builds("alice/site")
    assert len(queued) == 2 and queued[0]["no_cache"] == 1
    assert gw.state.audit(space_id="alice/site")[-1]["action"] == "factory-reboot"


STORAGE_SCRIPT = r"""
import json, sys
from huggingface_hub import HfApi
from huggingface_hub.utils import HfHubHTTPError
endpoint, owner, other = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
try:
    HfApi(endpoint=endpoint, token=other).request_space_storage("bob/site", "small")
except HfHubHTTPError as err:
    out["other"] = err.response.status_code
api = HfApi(endpoint=endpoint, token=owner)
out["set"] = api.request_space_storage("bob/site", "small").storage
out["runtime"] = api.get_space_runtime("bob/site").storage
try:
    api.request_space_storage("bob/site", "huge")
except HfHubHTTPError as err:
    out["huge"] = [err.response.status_code, err.response.json()["error"]]
out["dup"] = api.duplicate_space("bob/site", "bob/again", private=True).repo_id
out["deleted"] = api.delete_space_storage("bob/site").storage
print(json.dumps(out))
"""


def test_duplicate_and_storage_through_the_client(hub, tmp_path, old_client):
    """Issue 15 through the Hub API: duplicate_space (current client: duplicate_repo) copies a
    Space the caller can see into a namespace they may write, with their secrets and variables;
    request_space_storage / delete_space_storage follow the owner rules; all audited."""
    from helpers import git, push, work_repo
    from spacehooks import state
    from spacehooks.run import storage
    gw, tokens = hub
    tokens["bob-read"] = accounts.create_token(gw.state, "bob", "read")[1]
    alice = HfApi(endpoint=gw.url, token=tokens["alice"])
    alice.create_repo("alice/site", repo_type="space", space_sdk="static")
    alice.create_repo("acme/secret", repo_type="space", space_sdk="static", private=True)
    work = work_repo(tmp_path / "work", {"README.md": "---\ntitle: Site\nsdk: static\n---\n", "index.html": "<p>hi</p>\n"})
    assert push(work, str(Path(gw.settings["repo_root"]) / "alice" / "site.git")).returncode == 0
    alice.add_space_variable("alice/site", "GREETING", "hi")
    alice.add_space_secret("alice/site", "API_KEY", "alices")

    bob = HfApi(endpoint=gw.url, token=tokens["bob"])
    url = bob.duplicate_repo("alice/site", "bob/site", repo_type="space", space_secrets=[{"key": "API_KEY", "value": "bobs"}],
                             space_variables=[{"key": "EXTRA", "value": "1"}])
    assert str(url) == f"{gw.url}/spaces/bob/site"
    copy = Path(gw.settings["repo_root"]) / "bob" / "site.git"
    assert git("log", "--format=%s", "-1", "main", cwd=copy).stdout.strip() == "Duplicate from alice/site"
    assert "duplicated_from: alice/site" in git("show", "main:README.md", cwd=copy).stdout
    assert gw.state.variables("bob/site") == {"EXTRA": "1", "GREETING": "hi"}
    assert state.read_secrets(gw.settings.home, "bob/site") == {"API_KEY": "bobs"}
    assert bob.space_info("bob/site").private is False and len(gw.state.builds("bob/site")) == 1
    entry = gw.state.audit(space_id="bob/site")[-1]
    assert (entry["actor"], entry["action"], entry["detail"][:30]) == ("bob", "duplicate", "from=alice/site private=False ")

    def refused(api, from_id, to_id):
        with pytest.raises(HfHubHTTPError) as err:
            api.duplicate_repo(from_id, to_id, repo_type="space")
        return err.value.response.status_code, err.value.response.json()["error"]
    assert refused(bob, "alice/site", "acme/site") == (403, "bob may not create Spaces under acme")
    assert refused(HfApi(endpoint=gw.url, token=tokens["bob-read"]), "alice/site", "bob/x") == (
        403, "a read token cannot create a Space")
    assert refused(bob, "alice/site", "bob/site")[0] == 409
    with pytest.raises(RepositoryNotFoundError):  # a private Space bob may not see is not revealed
        bob.duplicate_repo("acme/secret", "bob/peek", repo_type="space")
    anonymous = requests.post(f"{gw.url}/api/spaces/alice/site/duplicate", json={"repository": "bob/anon"}, timeout=30)
    assert anonymous.status_code == 401
    assert not any((Path(gw.settings["repo_root"]) / "bob" / f"{n}.git").exists() for n in ("x", "peek", "anon"))

    try:
        run = subprocess.run([sys.executable, "-c", STORAGE_SCRIPT, gw.url, tokens["bob"], tokens["alice"]],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300,
                             env={"PYTHONPATH": str(old_client), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
                                  "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(old_client / "home")})
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        for line in open("/proc/self/mountinfo").read().splitlines():
            point = line.split(" ")[4]
            if point.startswith(str(gw.settings.home / "storage") + "/"):
                subprocess.run(["umount", "--lazy", point], capture_output=True)
    assert out == {"other": 403, "set": "small", "runtime": "small", "huge": [400, "unknown storage tier 'huge'; known: small (20 GB), "
                                                             "medium (150 GB), large (1 TB)"],
                   "dup": "bob/again", "deleted": None}
    assert storage.record(gw.settings, "bob/site") is None and not storage.image_path(gw.settings, "bob/site").exists()
    assert gw.state.get_space("bob/again")["private"] == 1
    assert [e["action"] for e in gw.state.audit(space_id="bob/site")][-3:] == ["storage", "storage", "storage-delete"]
