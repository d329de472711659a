"""Against a real cluster, when KUBECONFIG is set (skipped with this reason otherwise: no
Kubernetes API server can run on the machines this project is built on).

- always: the API answers; every manifest of a CPU and a GPU Space passes the server's own
  validation and admission as a server-side dry-run apply in SPACEHOOKS_TEST_KUBE_NAMESPACE
  (default `spacehooks-test`, which must exist);
- with SPACEHOOKS_TEST_KUBE_IMAGE (an image the cluster can pull that serves HTTP on
  SPACEHOOKS_TEST_KUBE_PORT, default 7860, as uid 1000 with `cp` in it): a Space is deployed,
  becomes RUNNING, sleeps (scaled to zero), wakes, and is removed with all its objects.
"""
import os
import time

import pytest

from kube_support import settings, spec
from spacehooks.engine import kubeapi, kubemanifests as km
from spacehooks.engine.kubernetes import KubernetesEngine

pytestmark = pytest.mark.skipif(
    not os.environ.get("KUBECONFIG"),
    reason="KUBECONFIG is not set: the live Kubernetes suite needs a real cluster (none can run here)")
NAMESPACE = os.environ.get("SPACEHOOKS_TEST_KUBE_NAMESPACE", "spacehooks-test")


@pytest.fixture
def eng(tmp_path):
    conf = settings(tmp_path, **{"kubernetes.namespace": NAMESPACE,
                                 "kubernetes.registry": os.environ.get("SPACEHOOKS_TEST_KUBE_REGISTRY", "")})
    return KubernetesEngine(conf, kubeapi.connect(conf))


def test_the_api_answers(eng):
    assert eng.ping().startswith("Kubernetes v")


def test_every_manifest_passes_the_servers_validation_as_a_dry_run(eng):
    for fields in ({}, {"gpus": 1, "gpu_kind": "nvidia.com/gpu"}, {"secrets": {"HF_TOKEN": "x"}}):
        for obj in km.objects(eng.settings, spec("live-test/dry-run", **fields), "registry.invalid/x:1"):
            eng.api.apply(km.kind_of(obj), obj["metadata"]["name"], km.encode(obj), dry_run=True)
    assert eng.api.get("Deployment", km.object_name("live-test/dry-run")) is None  # nothing was made


@pytest.mark.skipif(not os.environ.get("SPACEHOOKS_TEST_KUBE_IMAGE"),
                    reason="SPACEHOOKS_TEST_KUBE_IMAGE is not set: no image the cluster can pull to deploy")
def test_a_space_deploys_sleeps_wakes_and_goes(eng):
    image = os.environ["SPACEHOOKS_TEST_KUBE_IMAGE"]
    space_id = f"live-test/s{int(time.time())}"
    name = eng.run(spec(space_id, image=image, app_port=int(os.environ.get("SPACEHOOKS_TEST_KUBE_PORT", "7860"))))
    try:
        deadline = time.monotonic() + 300
        while (verdict := eng.verdict(name)) is None or verdict.stage != "RUNNING":
            assert verdict is None or verdict.stage != "RUNTIME_ERROR", verdict.reason
            assert time.monotonic() < deadline, f"not RUNNING after 300 s: {verdict}"
            time.sleep(2)
        eng.stop(name)
        deadline = time.monotonic() + 120
        while (state := eng.state(name)) is None or state.status != "stopped":
            assert time.monotonic() < deadline, f"not asleep after 120 s: {state}"
            time.sleep(2)
        eng.start(name)
        assert eng.api.get("Deployment", km.object_name(space_id))["spec"]["replicas"] == 1
    finally:
        eng.remove(name)
    assert eng.api.get("Service", km.object_name(space_id)) is None
