"""Metrics: a real gateway (relay and app) serves known traffic; a scrape of its metrics
address, parsed by the Prometheus client library's own parser, counts exactly that traffic,
per Space and in total, with the store's builds, restarts and stages, Podman's memory and CPU,
and wakes. The Grafana dashboard names only what is exported."""
import http.client
import json
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import GatewayUnderTest, Upstream, free_port
from test_gateway_static import STATIC_README, static_space

from spacehooks import config as config_mod
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError

DASHBOARD = Path(__file__).resolve().parents[1] / "contrib" / "grafana" / "spacehooks.json"


def scrape(url: str) -> dict:
    answer = requests.get(url, timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"{key} twice"
            samples[key] = sample.value
    return samples


def value(samples: dict, name: str, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


class WakingRunner:
    """Stands in for runner.wake/sleep (no container): a wake puts the Space on `port`."""

    def __init__(self, settings, port: int):
        self.settings, self.port = settings, port

    def wake(self, settings, space_id, timeout):
        time.sleep(0.2)
        st = state_mod.open(settings)
        try:
            st.update_space(space_id, stage="RUNNING", port=self.port)
        finally:
            st.close()
        return self.port

    def sleep(self, settings, space_id):
        pass


def get(gw, host, target="/", headers=None, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.request("GET", target, headers={"Host": host, **(headers or {})})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        if own:
            conn.close()


@pytest.fixture
def container(busybox_image, podman_url):
    """A running container of our own, made through the Podman service, to stand as a Space's."""
    name = f"spacehooks-metrics-test-{uuid.uuid4().hex[:8]}"
    podman = ["podman", "--url", podman_url]
    subprocess.run([*podman, "run", "-d", "--rm", "--name", name, busybox_image, "sleep", "300"],
                   check=True, stdout=subprocess.DEVNULL)
    yield name
    subprocess.run([*podman, "rm", "-f", "-t", "0", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_scrape_counts_known_traffic_through_relay_and_app(engine, loops, container):
    static_space(engine, "alice/site", {"README.md": STATIC_README, "index.html": "<h1>home</h1>\n"})
    up = Upstream(loops, "v1")
    metrics_port = free_port()
    gw = None
    try:
        gw = GatewayUnderTest(engine, loops, runner=None, **{"metrics.listen": f"127.0.0.1:{metrics_port}"})
        gw.sleeper._runner = WakingRunner(gw.settings, up.port)
        gw.add_space("alice/app", stage="RUNNING", port=up.port, container=container)
        gw.state.ensure_space("alice/sleepy", "/nonexistent")
        gw.state.update_space("alice/sleepy", stage="SLEEPING")
        gw.state.count_restart("alice/app")
        gw.state.count_restart("alice/app")
        relay = gw.listening.relay
        app_host, site_host = gw.host("alice/app"), gw.host("alice/site")
        direct, static = relay.direct, relay.static

        # through the relay, straight to the container: 5 answers, and one 404 from the app
        for _ in range(5):
            assert get(gw, app_host) == (200, b"hello from v1\n")
        assert get(gw, app_host, "/missing")[0] == 404
        assert relay.direct - direct == 6
        # asking for an event stream takes the relay too (it used to go through the app): 3 answers
        for _ in range(3):
            assert get(gw, app_host, headers={"Accept": "text/event-stream"}) == (200, b"hello from v1\n")
        assert relay.direct - direct == 9
        # a static Space: the first request loads the deploy folder (app), then the relay answers
        assert get(gw, site_host) == (200, b"<h1>home</h1>\n")
        assert get(gw, site_host) == (200, b"<h1>home</h1>\n")
        assert get(gw, site_host, "/nothing.html")[0] == 404
        assert relay.static - static >= 1
        # nothing is served at this host: the gateway's own 404
        assert get(gw, "nobody-here." + gw.settings["gateway.domain"])[0] == 404
        # a sleeping Space is woken by its first request
        assert get(gw, gw.host("alice/sleepy")) == (200, b"hello from v1\n")

        # the metrics are not on the public address
        assert get(gw, gw.settings["gateway.domain"], "/metrics")[0] == 404
        held = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        assert get(gw, app_host, conn=held)[0] == 200  # a kept-alive connection, open while we scrape
        samples = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        held.close()
    finally:
        if gw is not None:
            gw.stop()
        up.stop()

    hello = len(b"hello from v1\n")
    # per Space: requests by status class, latency histogram, body bytes
    assert value(samples, "spacehooks_requests_total", space="alice/app", code="2xx") == 5 + 3 + 1
    assert value(samples, "spacehooks_requests_total", space="alice/app", code="4xx") == 1
    assert value(samples, "spacehooks_requests_total", space="alice/app", code="5xx") == 0
    assert value(samples, "spacehooks_request_duration_seconds_count", space="alice/app") == 10
    assert value(samples, "spacehooks_request_duration_seconds_bucket", space="alice/app", le="+Inf") == 10
    assert 0 < value(samples, "spacehooks_request_duration_seconds_sum", space="alice/app") < 10
    not_found = len(b"404: Not Found")  # aiohttp's body for an unknown route
    assert value(samples, "spacehooks_response_bytes_total", space="alice/app") == 9 * hello + not_found
    assert value(samples, "spacehooks_requests_total", space="alice/site", code="2xx") == 2
    assert value(samples, "spacehooks_requests_total", space="alice/site", code="4xx") == 1
    assert value(samples, "spacehooks_response_bytes_total", space="alice/site") >= 2 * len(b"<h1>home</h1>\n")
    assert value(samples, "spacehooks_requests_total", space="alice/sleepy", code="2xx") == 1
    # gateway totals: every answer once, whoever made it (the unknown host's 404 included)
    assert value(samples, "spacehooks_gateway_requests_total", code="2xx") == 9 + 2 + 1
    assert value(samples, "spacehooks_gateway_requests_total", code="4xx") == 1 + 1 + 1 + 1  # /metrics too
    assert value(samples, "spacehooks_gateway_request_duration_seconds_count") == 16
    assert value(samples, "spacehooks_gateway_open_connections", side="relay") >= 1
    assert value(samples, "spacehooks_gateway_open_connections", side="app") is not None
    # stage, restarts, wakes
    assert value(samples, "spacehooks_space_stage", space="alice/app", stage="RUNNING") == 1
    assert value(samples, "spacehooks_space_stage", space="alice/app", stage="SLEEPING") == 0
    assert value(samples, "spacehooks_space_stage", space="alice/sleepy", stage="RUNNING") == 1
    assert value(samples, "spacehooks_space_restarts_total", space="alice/app") == 2
    assert value(samples, "spacehooks_space_restarts_total", space="alice/site") == 0
    assert value(samples, "spacehooks_space_wake_duration_seconds_count", space="alice/sleepy") == 1
    assert 0.2 <= value(samples, "spacehooks_space_wake_duration_seconds_sum", space="alice/sleepy") < 60
    # memory and CPU of the Space's container, from Podman
    assert value(samples, "spacehooks_engine_up") == 1
    assert value(samples, "spacehooks_space_memory_bytes", space="alice/app") > 0
    assert value(samples, "spacehooks_space_memory_limit_bytes", space="alice/app") > 0
    assert value(samples, "spacehooks_space_cpu_seconds_total", space="alice/app") >= 0
    assert value(samples, "spacehooks_space_memory_bytes", space="alice/site") is None  # no container
    # the build of alice/site, from the store
    st = state_mod.open(engine.settings)
    try:
        build = st.builds("alice/site")[0]
    finally:
        st.close()
    seconds = build["finished_at"] - build["started_at"]
    assert build["status"] == "succeeded"
    assert value(samples, "spacehooks_space_last_build_duration_seconds", space="alice/site",
                 outcome="succeeded", build=str(build["id"])) == pytest.approx(seconds)
    assert value(samples, "spacehooks_build_duration_seconds_count", outcome="succeeded") == 1
    assert value(samples, "spacehooks_build_duration_seconds_sum", outcome="succeeded") == pytest.approx(seconds)
    assert value(samples, "spacehooks_build_duration_seconds_count", outcome="failed") == 0
    assert value(samples, "spacehooks_builds", status="succeeded") == 1

    # the dashboard names only metrics this scrape exported
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(expressions) >= 6
    exported = {name for name, _ in samples}
    named = {n for e in expressions for n in re.findall(r"\bspacehooks_\w+", e)}
    assert named and named <= exported, named - exported


def test_without_the_relay_the_app_counts_every_answer_once(server, loops, upstream):
    metrics_port = free_port()
    # and Podman away: the scrape still answers, without memory and CPU
    gw = GatewayUnderTest(server, loops, **{"gateway.relay": False, "metrics.listen": f"127.0.0.1:{metrics_port}",
                                            "podman_url": f"unix://{server.home}/no-podman.sock"})
    try:
        assert gw.listening.relay is None
        gw.add_space("bob/app", stage="RUNNING", port=upstream.port, container="bob-app-container")
        host = gw.host("bob/app")
        held = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        for _ in range(4):
            assert get(gw, host, conn=held) == (200, b"hello from v1\n")
        assert get(gw, host, "/missing")[0] == 404
        samples = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        held.close()
    finally:
        gw.stop()
    assert value(samples, "spacehooks_requests_total", space="bob/app", code="2xx") == 4
    assert value(samples, "spacehooks_requests_total", space="bob/app", code="4xx") == 1
    assert value(samples, "spacehooks_request_duration_seconds_count", space="bob/app") == 5
    assert value(samples, "spacehooks_gateway_requests_total", code="2xx") == 4
    assert value(samples, "spacehooks_gateway_open_connections", side="app") >= 1
    assert value(samples, "spacehooks_gateway_open_connections", side="relay") is None
    assert value(samples, "spacehooks_space_stage", space="bob/app", stage="RUNNING") == 1
    assert value(samples, "spacehooks_engine_up") == 0
    assert value(samples, "spacehooks_space_memory_bytes", space="bob/app") is None


def test_metrics_listen_is_checked(server):
    server.configure(**{"gateway.listen": "127.0.0.1:8080", "metrics.listen": "127.0.0.1:8080"})
    with pytest.raises(SpaceError) as caught:
        config_mod.load(server.config, server.home)
    assert "metrics.listen" in caught.value.message
    assert "must not be the gateway's public address (gateway.listen)" in caught.value.message
    server.configure(**{"metrics.listen": "localhost"})
    with pytest.raises(SpaceError) as caught:
        config_mod.load(server.config, server.home)
    assert "must be HOST:PORT" in caught.value.message
    server.configure(**{"metrics.listen": ""})
    assert config_mod.load(server.config, server.home)["metrics.listen"] == ""
