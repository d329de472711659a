"""Network isolation, attacked for real: Spaces pushed and built through the hooks, their
containers and build steps probing (TCP and UDP) every address of the host, another Space's
container, the Podman API and a private-range machine made by the test in a network
namespace of its own, while the package index stays reachable. No probe goes to a real
private or metadata address: only loopback, the host's public-range addresses and
addresses this test (or spacehooks, for this test) made."""
import json
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from fence_support import (INDEX_URL, Lan, TokenListener, build_results, host_addresses,
                           probe_space_files)
from helpers import push


@pytest.fixture
def lan():
    lan = Lan()
    yield lan
    lan.close()


@pytest.fixture
def token():
    return uuid.uuid4().hex


@pytest.fixture
def host_listener(token):
    listener = TokenListener(token)
    yield listener
    listener.close()


@pytest.fixture
def peer_listener(token, lan):
    listener = TokenListener(token, netns=lan.ns)
    yield listener
    listener.close()


def deploy(engine, space_id, files):
    bare, work = engine.create(space_id, files)
    result = push(work, str(bare))
    assert result.returncode == 0, result.stdout
    assert engine.drain() == 1
    space = engine.space(space_id)
    assert space["stage"] == "RUNNING", space["error"]
    return space


def probe_from(space, query) -> dict:
    q = urllib.parse.quote(json.dumps(query))
    with urllib.request.urlopen(f"http://127.0.0.1:{space['port']}/probe?q={q}", timeout=60) as response:
        return json.loads(response.read())


def container_ip(name: str) -> str:
    inspect = json.loads(subprocess.run(["podman", "inspect", name], capture_output=True, check=True).stdout)[0]
    return next(n["IPAddress"] for n in inspect["NetworkSettings"]["Networks"].values())


def ours(engine, lan) -> tuple:
    from spacehooks.engine import netfence
    return (netfence.prefix(engine.settings), lan.host_if)


def reached(results: dict) -> dict:
    return {target: result for target, result in results.items() if result.startswith("answered")}


def test_space_and_its_build_steps_reach_no_host_address_no_other_space_but_the_index(
        engine, lan, token, host_listener, peer_listener, podman_url):
    # the listeners answer whoever can reach them: the host itself can, so a probe could succeed
    assert host_listener.port and peer_listener.port
    other = deploy(engine, "bob/other", probe_space_files(token))
    other_ip = container_ip(other["container"])
    targets = [[proto, address, host_listener.port] for proto in ("tcp", "udp")
               for address in host_addresses(ours(engine, lan)) + ["gateway"]]
    targets += [[proto, other_ip, 9000] for proto in ("tcp", "udp")]
    targets += [[proto, lan.peer_v4, peer_listener.port] for proto in ("tcp", "udp")]
    targets += [["unix", podman_url.removeprefix("unix://"), 0]]
    query = {"token": token, "targets": targets, "index": INDEX_URL}

    space = deploy(engine, "alice/probe", probe_space_files(token, build_query=query))
    log = (engine.home / "logs" / "builds" / "alice" / "probe" / f"{space['build_id']}.log").read_text()
    during_build = build_results(log)
    assert len(during_build) == len(targets) + 1, log
    assert during_build.pop("index") == "answered 200", log
    assert reached(during_build) == {}

    # the running Space: its own listener answers (the probe works), nothing else does
    own = [["tcp", "127.0.0.1", 9000], ["udp", "127.0.0.1", 9000]]
    running = probe_from(space, {**query, "targets": targets + own})
    assert running.pop("index") == "answered 200"
    assert reached(running) == {"tcp 127.0.0.1 9000": "answered", "udp 127.0.0.1 9000": "answered"}, running
    # and the other Space is as fenced from this one
    back = probe_from(other, {"token": token, "targets": [["tcp", container_ip(space["container"]), 9000],
                                                          ["udp", container_ip(space["container"]), 9000]]})
    assert reached(back) == {}


def test_egress_policy_denies_private_ranges_until_the_admin_opens_one(engine, lan, token, host_listener,
                                                                         peer_listener):
    from spacehooks import config
    from spacehooks.run import runner
    space = deploy(engine, "alice/egress", probe_space_files(token))
    peer = [[proto, lan.peer_v4, peer_listener.port] for proto in ("tcp", "udp")]
    host_side = [[proto, lan.host_v4, host_listener.port] for proto in ("tcp", "udp")]
    query = {"token": token, "targets": peer + host_side}
    assert reached(probe_from(space, query)) == {}

    engine.configure(network={"egress_allow": [str(lan.net)]})
    engine.settings = config.load()
    runner.restart(engine.settings, "alice/egress")
    space = engine.space("alice/egress")
    assert space["stage"] == "RUNNING", space["error"]
    # the opened machine answers; the host's own address in that range stays fenced
    assert reached(probe_from(space, query)) == {f"tcp {lan.peer_v4} {peer_listener.port}": "answered",
                                                 f"udp {lan.peer_v4} {peer_listener.port}": "answered"}
    # the Space's network goes with the Space
    from spacehooks.admin import spaces as admin
    from spacehooks.engine import netfence
    network = netfence.network_name(engine.settings, "alice/egress")
    assert subprocess.run(["podman", "network", "exists", network]).returncode == 0
    admin.delete(engine.settings, "alice/egress")
    assert subprocess.run(["podman", "network", "exists", network]).returncode == 1


def test_worker_loads_the_fence_again_after_a_firewall_reload_flushed_it(engine):
    from spacehooks.engine import netfence
    from spacehooks.run import worker
    w = worker.Worker(engine.settings)
    w._housekeeping()
    table = ["nft", "list", "table", "inet", netfence.table(engine.settings)]
    assert subprocess.run(table, capture_output=True).returncode == 0
    subprocess.run(["nft", "delete", "table", "inet", netfence.table(engine.settings)], check=True)
    w._fence_due = 1.0  # the check is due
    w._housekeeping()
    listing = subprocess.run(table, capture_output=True, text=True).stdout
    assert f'iifname "{netfence.prefix(engine.settings)}*" counter packets' in listing


def test_a_bad_range_in_the_egress_settings_is_named(engine):
    from spacehooks import config
    from spacehooks.engine import netfence
    from spacehooks.errors import SpaceError
    engine.configure(network={"egress_allow": ["10.0.0.300/32"]})
    with pytest.raises(SpaceError) as caught:
        netfence.apply(config.load())
    assert caught.value.format_message() == ("network.egress_allow: '10.0.0.300/32' is not an address or CIDR range\n"
                                             "  fix: write ranges like 10.0.0.0/8 or fd00::/8")


def test_fence_command_loads_and_shows_the_table(engine):
    from spacehooks.engine import netfence
    table = netfence.table(engine.settings)
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
    spacehooks = [str(Path(sys.executable).parent / "spacehooks")]
    loaded = subprocess.run(spacehooks + ["fence"], capture_output=True, text=True)
    assert (loaded.returncode, loaded.stdout) == (0, f"network fence loaded: nftables table inet {table}\n")
    listing = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True, text=True)
    assert listing.returncode == 0 and "192.168.0.0/16" in listing.stdout and "fc00::/7" in listing.stdout
    shown = subprocess.run(spacehooks + ["fence", "--show"], capture_output=True, text=True).stdout
    assert shown == netfence.ruleset(engine.settings)
    assert f'iifname "{netfence.prefix(engine.settings)}*" counter drop' in shown


def test_a_dockerfile_cannot_ask_for_the_hosts_network(engine):
    """Podman 4.3's builder takes only --mount on RUN: a step asking for the host's network
    fails the build instead of leaving the Space's network."""
    files = {"README.md": "---\ntitle: Host net\nsdk: docker\napp_port: 8000\n---\n",
             "Dockerfile": "FROM localhost/spacehooks/python:3.11\nRUN --network=host true\n"
                           'CMD ["python", "-m", "http.server", "8000"]\n'}
    bare, work = engine.create("alice/hostnet", files)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    space = engine.space("alice/hostnet")
    assert space["stage"] == "BUILD_ERROR"
    assert space["error"].endswith('building at STEP "RUN --network=host true": RUN only supports the --mount flag')
