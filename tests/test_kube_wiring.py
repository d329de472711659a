"""`engine: kubernetes` wired through the runner and the gateway, against the in-memory API
server (tests/kube_support.py) made by `engine.get` from a kubeconfig: a deploy waits on the
cluster's word for its Pod (ready, crash loop, memory kill, pending for a GPU node), makes no
host GPU allocation and no host network or nftables fence, and the gateway sends a Space's
requests to the engine's address (a local HTTP server stands in for the Service there)."""
import threading
import time
import urllib.request

import pytest

from gateway_support import GatewayUnderTest, Upstream, free_port, loops  # noqa: F401 - fixture
from kube_support import NS, FakeApi
from spacehooks import config, state
from spacehooks.engine import netfence
from spacehooks.run import gpu, runner
from spacehooks.engine import kubemanifests as km, kubernetes

SPACE = "alice/app"
IMAGE = "localhost/spacehooks/space/alice/app:b1"
CONFIG = {"sdk": "docker", "app_port": 7860, "title": "app", "startup_duration_timeout": "20s"}
GPU_MESSAGE = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."


@pytest.fixture
def api():
    fake = FakeApi()
    yield fake
    fake.close()


def kube_settings(server, api, **kube) -> None:
    kubeconfig = server.home.parent / "kubeconfig"
    kubeconfig.write_text(f"current-context: t\nclusters: [{{name: c, cluster: {{server: '{api.url}'}}}}]\n"
                          "users: [{name: u, user: {token: abc}}]\ncontexts: [{name: t, context: {cluster: c, user: u}}]\n")
    server.configure(engine="kubernetes", kubernetes={"namespace": NS, "registry": "registry.test:5000/sp",
                                                      "kubeconfig": str(kubeconfig), **kube},
                     hardware={"gpu-small": {"cpus": 1, "memory_mb": 512, "gpus": 1, "gpu_kind": "nvidia.com/gpu"}})


@pytest.fixture
def cluster(server, api, monkeypatch):
    """Settings with engine kubernetes; what the host fences and GPU allocation are asked, recorded."""
    kube_settings(server, api)
    monkeypatch.setattr(kubernetes, "READY_POLL", 0.05)
    asked = []
    monkeypatch.setattr(netfence, "apply", lambda settings: asked.append("nftables"))
    monkeypatch.setattr(netfence, "prepare", lambda settings, space_id: asked.append(("network", space_id)))
    monkeypatch.setattr(gpu, "devices_for", lambda *a: asked.append(("gpu", a)) or ["nvidia.com/gpu=0"])
    settings = config.load()
    st = state.open(settings)
    st.ensure_space(SPACE, str(server.root / "alice" / "app.git"))
    st.update_space(SPACE, hardware="gpu-small")
    st.close()
    api.settings, api.asked = settings, asked
    return api


def row(settings) -> dict:
    st = state.open(settings)
    try:
        return st.get_space(SPACE)
    finally:
        st.close()


def deploying(api, build: int = 1, config: dict = CONFIG) -> tuple[threading.Thread, str]:
    """runner.deploy on a thread, and the version name the engine put on the Deployment."""
    thread = threading.Thread(target=runner.deploy, args=(api.settings, SPACE, IMAGE, build, "1" * 40, config))
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for deployment in api.of_kind("deployments"):
            name = deployment["spec"]["template"]["metadata"]["annotations"][km.CONTAINER]
            if f"-{build}-" in name:
                return thread, name
        time.sleep(0.02)
    raise AssertionError("the runner applied no Deployment")


def pod(api, container: str, status: dict) -> None:
    api.put(api.ns_path("pods", "p-" + container[-6:]), {
        "metadata": {"name": "p-" + container[-6:], "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {**km.MANAGED, km.SPACE_LABEL: km.object_name(SPACE)},
                     "annotations": {km.CONTAINER: container, "spacehooks/spacehooks.space": SPACE}},
        "spec": {"containers": [{"name": "app"}]}, "status": status})


def app_status(state: dict, last: dict | None = None, restarts: int = 0, ready: bool = False) -> dict:
    return {"phase": "Running", "containerStatuses": [
        {"name": "app", "image": "registry.test:5000/sp/x", "state": state, "lastState": last or {},
         "restartCount": restarts, "ready": ready}]}


READY = app_status({"running": {"startedAt": "2026-01-01T00:00:01Z"}}, ready=True)


def test_a_deploy_is_running_when_the_cluster_says_its_pod_is_ready_with_no_host_gpu_or_fence(cluster):
    thread, name = deploying(cluster)
    pod(cluster, name, READY)
    thread.join(30)
    s = row(cluster.settings)
    assert (s["stage"], s["container"], s["error"]) == ("RUNNING", name, None)
    # the cluster's scheduler places the GPU and the NetworkPolicy fences the Space: nothing on this host
    assert cluster.asked == [] and gpu.allocations(cluster.settings) == []
    deployment = cluster.of_kind("deployments")[0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert [n for n in cluster.of_kind("networkpolicies")] != []
    # what the push says: where the gateway reaches it, the Service
    assert runner.where(cluster.settings, s) == f" on {km.object_name(SPACE)}.{NS}.svc.cluster.local:80"


@pytest.mark.parametrize("last, first_line", [
    ({"terminated": {"exitCode": 3, "reason": "Error"}}, "the app exited with code 3 (restarted 2 times by the cluster)"),
    ({"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
     "the app was killed for using more memory than its limit (memory limit reached) (restarted 2 times by the cluster)"),
])
def test_a_crash_loop_or_a_memory_kill_is_a_runtime_error_with_the_log_tail(cluster, last, first_line):
    thread, name = deploying(cluster)
    cluster.logs["p-" + name[-6:]] = "starting\nTraceback: boom\n"
    pod(cluster, name, app_status({"waiting": {"reason": "CrashLoopBackOff"}}, last, restarts=2))
    thread.join(30)
    s = row(cluster.settings)
    assert s["stage"] == "RUNTIME_ERROR" and s["container"] is None
    assert s["error"] == f"{first_line}\nlog tail:\nstarting\nTraceback: boom"
    # the version that never served is removed: its Deployment scaled to zero
    assert cluster.of_kind("deployments")[0]["spec"]["replicas"] == 0
    assert cluster.asked == []


def test_pending_for_a_gpu_shows_waiting_for_a_gpu_node_until_the_pod_is_ready(cluster):
    thread, name = deploying(cluster)
    pod(cluster, name, {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": GPU_MESSAGE}]})
    deadline = time.monotonic() + 20
    while row(cluster.settings)["error"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    s = row(cluster.settings)
    assert (s["stage"], s["error"]) == ("APP_STARTING", f"waiting for a GPU node: {GPU_MESSAGE}")
    assert thread.is_alive()
    pod(cluster, name, READY)
    thread.join(30)
    s = row(cluster.settings)
    assert (s["stage"], s["container"], s["error"]) == ("RUNNING", name, None)


def test_a_pod_pending_past_the_startup_timeout_says_what_it_waited_for(cluster):
    thread, name = deploying(cluster, config={**CONFIG, "startup_duration_timeout": "1s"})
    pod(cluster, name, {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": GPU_MESSAGE}]})
    thread.join(30)
    s = row(cluster.settings)
    assert s["stage"] == "RUNTIME_ERROR"
    assert s["error"] == ("the app was not ready within 1s (startup_duration_timeout); "
                          f"waiting for a GPU node: {GPU_MESSAGE}\nlog tail: (empty)")


def test_the_gateway_sends_a_kubernetes_space_to_the_engines_address_and_the_page_says_how_it_rolled_out(
        server, api, loops):  # noqa: F811 - the fixture
    service = Upstream(loops, "the-service")  # stands in for the Space's Service
    kube_settings(server, api, addresses={SPACE: f"127.0.0.1:{service.port}"})
    gw = GatewayUnderTest(server, loops)
    try:
        # the row's port is the version's key on the host: nothing listens there
        gw.add_space(SPACE, port=free_port(), container="spacehooks-alice-app-1-1", config=CONFIG)
        plain = urllib.request.Request(gw.url + "/", headers={"Host": gw.host(SPACE)})
        assert urllib.request.urlopen(plain, timeout=10).read() == b"hello from the-service\n"
        assert gw.listening.relay.direct == 1  # the relay's own path
        events = urllib.request.Request(gw.url + "/sse", headers={"Host": gw.host(SPACE), "Accept": "text/event-stream"})
        assert b"data: tick 2 from the-service" in urllib.request.urlopen(events, timeout=10).read()  # the app's path

        page = urllib.request.urlopen(gw.url + "/spaces/alice/app", timeout=10).read().decode()
        assert 'id="rollout-note"' not in page
        api.put(api.ns_path("deployments", km.object_name(SPACE)), {
            "metadata": {"name": km.object_name(SPACE), "annotations": {km.ROLLOUT: "recreate"}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "app", "resources": {"limits": {"cpu": "1", "memory": "512Mi", "nvidia.com/gpu": "1"}}}]}}}})
        page = urllib.request.urlopen(gw.url + "/spaces/alice/app", timeout=10).read().decode()
        assert ("no spare nvidia.com/gpu in the cluster for a second copy: the new version replaces the old one, "
                "and the Space is down while it starts") in page

        gw.add_space("alice/waits", stage="APP_STARTING", error=f"waiting for a GPU node: {GPU_MESSAGE}", config=CONFIG)
        page = urllib.request.urlopen(gw.url + "/spaces/alice/waits", timeout=10).read().decode()
        assert f'<p id="waiting">waiting for a GPU node: {GPU_MESSAGE}</p>' in page
    finally:
        gw.stop()
        service.stop()
