"""The Kubernetes engine's API calls against an in-memory API server (tests/kube_support.py):
what a push sends, updates, sleep and wake, rollback, GPU rollouts, and the stage a Pod's
status gives. Beside these, test_kube_play.py runs the same bytes under `podman kube play`."""
import json

import pytest

from kube_support import NS, FakeApi, settings, spec
from spacehooks.run import supervise
from spacehooks.engine import kubeapi, kubemanifests as km, kubestatus
from spacehooks.engine.kubernetes import KubernetesEngine
from spacehooks.errors import SpaceError

NAME = km.object_name("alice/demo")


@pytest.fixture
def api():
    fake = FakeApi()
    yield fake
    fake.close()


def engine(api, tmp_path, **values) -> KubernetesEngine:
    return KubernetesEngine(settings(tmp_path, **values), kubeapi.Api(api.url, NS))


def test_a_push_applies_the_spaces_objects_in_order_with_server_side_apply(api, tmp_path):
    eng = engine(api, tmp_path)
    assert eng.run(spec(secrets={"HF_TOKEN": "hf_secret"})) == "spacehooks-alice-demo-1-1"
    sent = api.sent("PATCH")
    assert [(c.path.split("/")[-2], c.path.split("/")[-1]) for c in sent] == [
        ("secrets", NAME), ("networkpolicies", NAME), ("services", NAME), ("deployments", NAME)]
    for call in sent:
        assert call.content_type == "application/apply-patch+yaml"
        assert call.query == {"fieldManager": "spacehooks", "force": "true"}
        assert call.path.startswith(("/api/v1/namespaces/spaces-test/", "/apis/apps/v1/namespaces/spaces-test/",
                                     "/apis/networking.k8s.io/v1/namespaces/spaces-test/"))
    deployment = json.loads(sent[-1].body)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.test:5000/sp/spaces/alice/demo:1"
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": NAME}}]
    # the secret's value travels only in the Secret, never in the Deployment
    assert b"hf_secret" not in sent[-1].body and b"hf_secret" in sent[0].body
    assert deployment["metadata"]["annotations"]["spacehooks/spacehooks.space"] == "alice/demo"


def test_a_new_version_updates_the_same_deployment_and_drops_secrets_the_space_no_longer_has(api, tmp_path):
    eng = engine(api, tmp_path)
    eng.run(spec(secrets={"HF_TOKEN": "x"}))
    eng.run(spec(build=2))
    assert len(api.of_kind("deployments")) == 1
    template = api.of_kind("deployments")[0]["spec"]["template"]
    assert template["metadata"]["annotations"][km.CONTAINER] == "spacehooks-alice-demo-2-1"
    assert template["spec"]["containers"][0]["image"].endswith("/spaces/alice/demo:2")
    assert "envFrom" not in template["spec"]["containers"][0]
    assert api.of_kind("secrets") == []
    assert ("DELETE", api.ns_path("secrets", NAME)) in [(c.method, c.path) for c in api.calls]


def test_sleep_scales_to_zero_and_wake_scales_back(api, tmp_path):
    eng = engine(api, tmp_path)
    name = eng.run(spec())
    # before the cluster made its Pod the version exists, starting (not "removed")
    assert (eng.state(name).status, eng.state(name).running) == ("created", False)
    eng.stop(name)
    patch = api.sent("PATCH")[-1]
    assert (patch.content_type, json.loads(patch.body)) == ("application/merge-patch+json", {"spec": {"replicas": 0}})
    assert api.of_kind("deployments")[0]["spec"]["replicas"] == 0
    asleep = eng.state(name)
    assert (asleep.status, asleep.running, asleep.labels["spacehooks.space"]) == ("stopped", False, "alice/demo")
    eng.start(name)
    assert api.of_kind("deployments")[0]["spec"]["replicas"] == 1
    with pytest.raises(Exception, match="no Space in namespace spaces-test runs nope"):
        eng.start("nope")


def _pod(api, name: str, container: str, status: dict, created: str = "2026-01-01T00:00:00Z") -> dict:
    return api.put(api.ns_path("pods", name), {
        "metadata": {"name": name, "creationTimestamp": created,
                     "labels": {**km.MANAGED, km.SPACE_LABEL: NAME},
                     "annotations": {km.CONTAINER: container, "spacehooks/spacehooks.space": "alice/demo"}},
        "spec": {"containers": [{"name": "app"}]}, "status": status})


def _app(state: dict, last: dict | None = None, restarts: int = 0, ready: bool = False) -> dict:
    return {"phase": "Running", "containerStatuses": [
        {"name": "app", "image": "registry.test:5000/sp/spaces/alice/demo:1", "state": state,
         "lastState": last or {}, "restartCount": restarts, "ready": ready}]}


def test_a_crash_loop_is_a_runtime_error_with_the_exit_and_the_previous_logs_tail(api, tmp_path):
    eng = engine(api, tmp_path)
    _pod(api, "p1", "c1", _app({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                               {"terminated": {"exitCode": 3, "reason": "Error"}}, restarts=4))
    api.logs["p1"] = "".join(f"line {i}\n" for i in range(100)) + "Traceback: boom\n"
    verdict = eng.verdict("c1")
    assert verdict.stage == "RUNTIME_ERROR"
    assert verdict.reason.splitlines()[0] == "the app exited with code 3 (restarted 4 times by the cluster)"
    assert verdict.reason.splitlines()[1] == "log tail:"
    assert verdict.reason.splitlines()[-1] == "Traceback: boom"
    log_call = [c for c in api.calls if c.path.endswith("/p1/log")][-1]
    assert log_call.query == {"container": "app", "tailLines": "30", "previous": "true"}
    state = eng.state("c1")
    assert (state.running, state.exit_code, state.oom_killed, state.status) == (False, 3, False, "exited")


def test_an_oom_kill_says_what_the_podman_engine_says(api, tmp_path):
    eng = engine(api, tmp_path)
    _pod(api, "p1", "c1", _app({"waiting": {"reason": "CrashLoopBackOff"}},
                               {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, restarts=1))
    verdict = eng.verdict("c1")
    assert kubestatus.OOM_REASON == supervise.OOM_REASON
    assert verdict.reason.splitlines()[0] == supervise.OOM_REASON + " (restarted 1 times by the cluster)"
    state = eng.state("c1")
    assert (state.oom_killed, state.exit_code) == (True, 137)


def test_an_image_the_cluster_cannot_pull_is_a_runtime_error_naming_it(api, tmp_path):
    eng = engine(api, tmp_path)
    _pod(api, "p1", "c1", {"phase": "Pending", "initContainerStatuses": [
        {"name": "home", "image": "registry.test:5000/sp/spaces/alice/demo:1",
         "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]})
    assert eng.verdict("c1") == kubestatus.Verdict(
        "RUNTIME_ERROR", "the cluster cannot pull the image registry.test:5000/sp/spaces/alice/demo:1: "
                         "ImagePullBackOff (Back-off pulling image)")


def test_a_pod_pending_for_lack_of_gpus_is_waiting_for_a_gpu_node(api, tmp_path):
    eng = engine(api, tmp_path)
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available."
    _pod(api, "p1", "c1", {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]})
    assert eng.verdict("c1") == kubestatus.Verdict("APP_STARTING", f"waiting for a GPU node: {message}")
    assert eng.state("c1").status == "Pending"


def test_a_ready_pod_is_running_and_the_newest_pod_of_a_version_counts(api, tmp_path):
    eng = engine(api, tmp_path)
    _pod(api, "old", "c1", _app({"terminated": {"exitCode": 1, "reason": "Error"}}), "2026-01-01T00:00:00Z")
    _pod(api, "new", "c1", _app({"running": {"startedAt": "2026-01-01T00:01:00Z"}}, ready=True),
         "2026-01-01T00:01:00Z")
    assert eng.verdict("c1") == kubestatus.Verdict("RUNNING")
    assert eng.state("c1").running
    assert set(eng.states("spacehooks.space=alice/demo")) == {"c1"}
    assert eng.states("spacehooks.space=bob/other") == {}


def _gpu_node(api, name: str, gpus: int):
    api.put(f"/api/v1/nodes/{name}", {"metadata": {"name": name, "labels": {"nvidia.com/gpu.present": "true"}},
                                      "spec": {}, "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}}})


def test_a_gpu_space_rolls_out_by_replacement_when_the_cluster_has_no_spare_gpu(api, tmp_path):
    eng = engine(api, tmp_path)
    gpu = dict(gpus=1, gpu_kind="nvidia.com/gpu")
    _gpu_node(api, "gpu-1", 1)
    eng.run(spec(**gpu))
    # the first version holds the node's only GPU
    api.put("/api/v1/namespaces/other/pods/holder", {"metadata": {"name": "holder"}, "spec": {
        "nodeName": "gpu-1", "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})
    eng.run(spec(build=2, **gpu))
    deployment = api.of_kind("deployments")[0]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["metadata"]["annotations"][km.ROLLOUT] == "recreate"
    assert eng.notes["alice/demo"] == ("no spare nvidia.com/gpu in the cluster for a second copy: the new version "
                                       "replaces the old one, and the Space is down while it starts")
    # a fresh engine (engine.get makes one per call) reads the note back from the cluster
    assert engine(api, tmp_path).rollout_note("alice/demo") == eng.notes["alice/demo"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    _gpu_node(api, "gpu-2", 1)  # now a second GPU is free: blue-green again
    eng.run(spec(build=3, **gpu))
    assert api.of_kind("deployments")[0]["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "alice/demo" not in eng.notes
    assert eng.rollout_note("alice/demo") is None


def test_removing_a_version_that_never_took_over_rolls_back_to_the_one_still_serving(api, tmp_path):
    eng = engine(api, tmp_path)
    eng.run(spec())
    old_template = json.loads(json.dumps(api.of_kind("deployments")[0]["spec"]["template"]))
    old_template["metadata"]["labels"]["pod-template-hash"] = "abc"
    api.put(api.ns_path("replicasets", NAME + "-abc"), {
        "metadata": {"name": NAME + "-abc", "labels": {km.SPACE_LABEL: NAME}},
        "spec": {"template": old_template}, "status": {"readyReplicas": 1}})
    new = eng.run(spec(build=2))
    eng.remove(new)
    template = api.of_kind("deployments")[0]["spec"]["template"]
    assert template["metadata"]["annotations"][km.CONTAINER] == "spacehooks-alice-demo-1-1"
    assert "pod-template-hash" not in template["metadata"]["labels"]
    assert api.of_kind("services") and api.of_kind("networkpolicies")


def test_the_runners_sleep_scales_to_zero_its_wake_scales_up_and_an_old_name_is_a_no_op(api, tmp_path):
    """The runner sleeps a Space by removing its version and wakes it by running a new one."""
    eng = engine(api, tmp_path)
    eng.run(spec(secrets={"A": "b"}))
    eng.run(spec(build=2, secrets={"A": "b"}))
    eng.remove("spacehooks-alice-demo-1-1")  # replaced already: the rollout removed its Pod
    assert api.of_kind("deployments")[0]["spec"]["replicas"] == 1
    eng.remove("spacehooks-alice-demo-2-1")
    assert api.of_kind("deployments")[0]["spec"]["replicas"] == 0
    assert eng.state("spacehooks-alice-demo-2-1").status == "stopped"
    assert [len(api.of_kind(k)) for k in ("services", "secrets", "networkpolicies")] == [1, 1, 1]
    eng.run(spec(build=2, secrets={"A": "b"}))
    assert api.of_kind("deployments")[0]["spec"]["replicas"] == 1
    # deleting a Space (admin delete: remove_all) takes every object
    eng._images = type("NoImages", (), {"remove_all": lambda self, label, repo: None})()
    eng.remove_all("spacehooks.space=alice/demo", "localhost/spaces/alice/demo")
    assert [api.of_kind(k) for k in ("deployments", "services", "secrets", "networkpolicies")] == [[], [], [], []]


def test_a_spaces_data_claim_outlives_its_sleep_and_goes_with_the_space(api, tmp_path):
    from spacehooks.engine.spec import DataMount, IdMap
    data = dict(data=DataMount(target="/data", source="/unused/on/kubernetes", size_mb=1024),
                userns=IdMap(host_id=1 << 30, size=65536), userns_auto=False)
    eng = engine(api, tmp_path)
    name = eng.run(spec(**data))
    claims = api.of_kind("persistentvolumeclaims")
    assert [c["metadata"]["name"] for c in claims] == [km.data_claim_name("alice/demo")]
    eng.remove(name)  # the runner's sleep
    eng.stop(eng.run(spec(build=2, **data)))
    assert len(api.of_kind("persistentvolumeclaims")) == 1
    eng._images = type("NoImages", (), {"remove_all": lambda self, label, repo: None})()
    eng.remove_all("spacehooks.space=alice/demo", "localhost/spaces/alice/demo")
    assert api.of_kind("persistentvolumeclaims") == []


def test_cluster_errors_are_space_errors_with_the_servers_words(api, tmp_path):
    eng = engine(api, tmp_path)
    api.denied.add(api.ns_path("deployments", NAME))
    with pytest.raises(SpaceError) as caught:
        eng.run(spec())
    assert caught.value.message == (f"Kubernetes API PATCH {api.ns_path('deployments', NAME)}: 403 "
                                    f"forbidden: {api.ns_path('deployments', NAME)}")
    assert caught.value.hint == "give spacehooks' account the Role in contrib/kubernetes/rbac.yaml in this namespace"
    api.close()
    with pytest.raises(SpaceError, match=r"^cannot reach the Kubernetes API at http://127\.0\.0\.1:\d+: "):
        eng.ping()


def test_the_gateway_address_is_the_service_in_the_cluster_or_a_fixed_one(api, tmp_path):
    eng = engine(api, tmp_path)
    assert eng.address("alice/demo") == (f"{NAME}.spaces-test.svc.cluster.local", 80)
    eng = engine(api, tmp_path, **{"kubernetes.addresses": {"alice/demo": "192.0.2.7:31000"},
                                   "kubernetes.service_type": "NodePort"})
    assert eng.address("alice/demo") == ("192.0.2.7", 31000)
    eng = engine(api, tmp_path, **{"kubernetes.addresses": {"alice/demo": "[2001:db8::7]:31000"}})
    assert eng.address("alice/demo", "any-version", 0) == ("2001:db8::7", 31000)
    eng = engine(api, tmp_path, **{"kubernetes.addresses": {"alice/demo": "192.0.2.7"}})
    with pytest.raises(SpaceError) as caught:
        eng.address("alice/demo")
    assert caught.value.message == "the address '192.0.2.7' for alice/demo is not host:port"


def test_engine_get_makes_it_from_the_settings_and_a_kubeconfig(api, tmp_path):
    from spacehooks import engine as engine_pkg
    config = tmp_path / "kubeconfig"
    config.write_text(f"current-context: t\nclusters: [{{name: c, cluster: {{server: '{api.url}'}}}}]\n"
                      "users: [{name: u, user: {token: abc}}]\ncontexts: [{name: t, context: {cluster: c, user: u}}]\n")
    eng = engine_pkg.get(settings(tmp_path, **{"kubernetes.kubeconfig": str(config)}))
    assert isinstance(eng, KubernetesEngine) and eng.ping() == "Kubernetes v1.30.0-fake"
    with pytest.raises(SpaceError) as caught:
        engine_pkg.get(settings(tmp_path, **{"kubernetes.kubeconfig": str(config), "kubernetes.registry": ""}))
    assert caught.value.message == "engine kubernetes needs a registry the cluster pulls Space images from"


def test_an_image_without_cp_fails_at_the_home_copy_and_says_so(api, tmp_path):
    eng = engine(api, tmp_path)
    _pod(api, "p1", "c1", {"phase": "Pending", "initContainerStatuses": [
        {"name": "home", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 127, "reason": "Error"}}, "restartCount": 2}]})
    assert eng.verdict("c1").reason.splitlines()[0] == (
        "the step that copies the app's home exited with code 127 (restarted 2 times by the cluster)")


def test_logs_follow_from_the_versions_pod_and_remove_all_takes_every_matching_space(api, tmp_path):
    eng = engine(api, tmp_path)
    _pod(api, "p1", "c1", _app({"running": {}}, ready=True))
    api.logs["p1"] = "started\nserving\n"
    assert b"".join(eng.follow_logs("c1", since=1767225600.5)) == b"started\nserving\n"
    call = [c for c in api.calls if c.path.endswith("/p1/log")][-1]
    assert call.query == {"container": "app", "follow": "true", "sinceTime": "2026-01-01T00:00:00Z"}
    assert list(eng.follow_logs("gone")) == []
    eng.run(spec())
    eng.run(spec("bob/other"))
    eng._images = type("NoImages", (), {"remove_all": lambda self, label, repo: None})()
    eng.remove_all("spacehooks.space=alice/demo", "localhost/spaces/alice/demo")
    assert [d["metadata"]["name"] for d in api.of_kind("deployments")] == [km.object_name("bob/other")]
    assert [s["metadata"]["name"] for s in api.of_kind("services")] == [km.object_name("bob/other")]


def test_the_interfaces_promises_for_what_is_not_there(api, tmp_path, podman_url):
    """As tests/test_engine_contract.py asks of the Podman engine and FakeEngine; images go to
    the real Podman service."""
    from spacehooks import engine as engine_pkg
    eng = engine(api, tmp_path, podman_url=podman_url)
    assert eng.state("spacehooks-contract-none") is None
    eng.remove("spacehooks-contract-none")  # gone already is fine
    assert eng.log_tail("spacehooks-contract-none", 5) == ""
    assert list(eng.follow_logs("spacehooks-contract-none", follow=False)) == []
    assert eng.image("localhost/spacehooks/contract-none:1") is None
    assert not eng.image_exists("localhost/spacehooks/contract-none:1")
    with pytest.raises(engine_pkg.NotFound):
        eng.remove_image("localhost/spacehooks/contract-none:1")
    with pytest.raises(engine_pkg.NotFound):
        eng.stop("spacehooks-contract-none")
