"""Space ids that share a host name: the second is refused at create and at its first push,
and the gateway keeps the address with the older Space."""
import logging
import subprocess
import sys
import time

import requests

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import Upstream
from helpers import GRADIO_README, bare_repo, git, push, refs_and_objects, work_repo

SHARED = 'ids that differ only in letter case or in "/", "-", "_", "." share one address'
REJECTED = "Sorry, your push was rejected during Space verification:"


def cli(*args, check=False):
    return subprocess.run([sys.executable, "-m", "spacehooks", *args], check=check,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_create_refuses_an_id_whose_address_is_taken(server):
    for first, second, host in (("alice/x-y", "alice-x/y", "alice-x-y.localhost"),
                                ("a/h-1", "a/h_1", "a-h-1.localhost"),
                                ("bob/demo", "Bob/Demo", "bob-demo.localhost"),
                                ("carol/v1.2", "carol/v1-2", "carol-v1-2.localhost")):
        assert cli("create", first).returncode == 0
        refused = cli("create", second)
        assert refused.returncode == 1
        assert refused.stdout.splitlines() == [
            f"Error: cannot create {second}: its address {host} belongs to {first}",
            f"  fix: {SHARED}; choose another name"]
        owner, name = second.split("/")
        assert not (server.root / owner / f"{name}.git").exists()


def remote(result):
    return [line.removeprefix("remote: ").rstrip() for line in result.stdout.splitlines() if line.startswith("remote: ")]


def installed(server, space_id):
    bare = bare_repo(server.root, space_id)  # plain git init, as a git server would make it
    cli("install", str(bare), check=True)
    return bare


def test_first_push_to_a_second_repository_is_refused_naming_the_first(server, tmp_path):
    first = installed(server, "alice/x-y")
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "print(1)\n"})
    assert push(work, str(first)).returncode == 0
    second = installed(server, "alice-x/y")
    before = refs_and_objects(second)
    refused = push(work, str(second))
    assert refused.returncode != 0
    assert remote(refused)[1:] == [
        f" !     {REJECTED}",
        f" !     alice-x/y: its address alice-x-y.localhost belongs to alice/x-y; {SHARED}: push it under another name"]
    assert refs_and_objects(second) == before
    # the first keeps its address and goes on taking pushes
    work_repo(work, {"app.py": "print(2)\n"}, "second")
    assert push(work, str(first)).returncode == 0


def test_a_repository_pushed_before_the_hooks_holds_its_address(server, tmp_path):
    """The store does not know it yet, but its deploy branch exists: it came first."""
    first = bare_repo(server.root, "a/h-1")
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "print(1)\n"})
    assert push(work, str(first)).returncode == 0  # no hooks yet
    second = installed(server, "a/h_1")
    refused = push(work, str(second))
    assert refused.returncode != 0
    assert remote(refused)[-1] == f" !     a/h_1: its address a-h-1.localhost belongs to a/h-1; {SHARED}: push it under another name"


def test_of_two_known_spaces_sharing_an_address_only_the_newer_is_refused(server, tmp_path):
    """Both made before these checks (both in the store): the older one keeps pushing."""
    from spacehooks import config, state
    old, new = installed(server, "alice/x-y"), installed(server, "alice-x/y")
    st = state.open(config.load())
    st.ensure_space("alice/x-y", old)
    time.sleep(0.01)
    st.ensure_space("alice-x/y", new)
    st.close()
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "print(1)\n"})
    assert push(work, str(old)).returncode == 0
    refused = push(work, str(new))
    assert refused.returncode != 0
    assert remote(refused)[-1] == f" !     alice-x/y: its address alice-x-y.localhost belongs to alice/x-y; {SHARED}: push it under another name"


def test_the_gateway_keeps_the_address_with_the_older_space_and_logs_the_clash_once(gw, loops, caplog):
    old, new = Upstream(loops, "old"), Upstream(loops, "new")
    try:
        gw.add_space("alice/x-y", port=old.port)   # older; its id sorts after the newer one's
        gw.add_space("alice-x/y", port=new.port)
        caplog.set_level(logging.WARNING, logger="spacehooks.gateway")
        for _ in range(3):
            answer = requests.get(f"{gw.url}/", headers={"Host": f"alice-x-y.localhost:{gw.port}"}, timeout=10)
            assert (answer.status_code, answer.text) == (200, "hello from old\n")
            time.sleep(1.1)  # past the snapshot's lifetime: the registry reloads
        clashes = [r.getMessage() for r in caplog.records if "same address" in r.getMessage()]
        assert clashes == ["host alice-x-y.localhost belongs to alice/x-y; alice-x/y has the same address "
                           "and is not served there"]
    finally:
        old.stop()
        new.stop()


def test_doctor_names_spaces_sharing_an_address(server, podman_url):
    from spacehooks import config, state
    st = state.open(config.load())
    st.ensure_space("alice/x-y", server.root / "alice" / "x-y.git")
    time.sleep(0.01)
    st.ensure_space("alice-x/y", server.root / "alice-x" / "y.git")
    st.close()
    out = cli("doctor").stdout
    assert ("PROBLEM  alice-x/y shares the address alice-x-y.localhost with alice/x-y, which is older and served there\n"
            "  fix: spacehooks delete alice-x/y and push it again under another name") in out
