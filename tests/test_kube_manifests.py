"""Every manifest the Kubernetes engine makes, validated against the Kubernetes API schema of a
pinned version (kubernetes-validate ships the schemas: no network), strict (an unknown field
fails); and the security fences each one must carry."""
import ipaddress
import re
from importlib import resources

import kubernetes_validate
import pytest

from kube_support import settings, spec
from spacehooks.engine import kubemanifests as km
from spacehooks.engine.spec import DataMount, FileMount, IdMap

KUBERNETES = "1.30.0"  # the pinned API version every manifest is checked against
GPU = dict(gpus=2, gpu_kind="nvidia.com/gpu")
SPECS = {
    "cpu": {},
    "secrets and files": dict(secrets={"HF_TOKEN": "x", "OPENAI_API_KEY": "y"},
                              files=(FileMount(target="/home/user/app/.streamlit/secrets.toml", content=b'A = "b"\n'),)),
    "gpu": GPU,
    "storage": dict(data=DataMount(target="/data", source="/srv/storage/mnt/alice/x", size_mb=20 * 1024),
                    userns=IdMap(host_id=1 << 30, size=65536), userns_auto=False, env={"HF_HOME": "/data/.huggingface"}),
}
SETTINGS = {
    "defaults": {},
    "node port, user namespaces, pull secret, gateway outside": {
        "kubernetes.service_type": "NodePort", "kubernetes.user_namespaces": True,
        "kubernetes.pull_secret": "regcred", "kubernetes.gateway_cidrs": ["192.0.2.10/32"],
        "network.egress_allow": ["10.0.5.20/32"]},
    "knative": {"kubernetes.knative": True},
}


def validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def all_objects(tmp_path):
    for setting_name, values in SETTINGS.items():
        conf = settings(tmp_path, **values)
        for spec_name, fields in SPECS.items():
            for recreate in (False, True):
                for obj in km.objects(conf, spec("Alice/My_Space.v2", **fields), "reg/x:1", recreate=recreate,
                                      sleep_seconds=3600):
                    yield f"{setting_name} / {spec_name} / {obj['kind']}", obj


def test_the_schemas_ship_with_the_package_for_the_pinned_version():
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema" / "v1.30.0-local-strict"
    assert (folder / "deployment-apps-v1.json").is_file()
    assert (folder / "networkpolicy-networking-v1.json").is_file()


def test_every_generated_manifest_is_valid_for_the_pinned_kubernetes(tmp_path):
    kinds = set()
    for where, obj in all_objects(tmp_path):
        if obj["apiVersion"].startswith("serving.knative.dev/"):
            # a CRD: no schema in Kubernetes; its template is a PodSpec, checked as one
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                   "spec": obj["spec"]["template"]["spec"]}
            validate(pod)
        else:
            validate(obj)
        kinds.add(obj["kind"])
    assert kinds == {"Deployment", "Service", "Secret", "NetworkPolicy", "PersistentVolumeClaim"}


@pytest.mark.parametrize("knative", [False, True])
def test_storage_is_a_claim_of_the_tier_size_at_data_owned_by_the_app_user(tmp_path, knative):
    conf = settings(tmp_path, **{"kubernetes.knative": knative})
    objects = km.objects(conf, spec("alice/keeps", **SPECS["storage"]), "reg/x:1", sleep_seconds=60)
    claims = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert [c["metadata"]["name"] for c in claims] == [km.data_claim_name("alice/keeps")]
    assert claims[0]["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20480Mi"}}}
    owner = objects[-1]
    assert objects.index(claims[0]) < objects.index(owner)  # what the Pod refers to comes first
    pod = owner["spec"]["template"]["spec"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": km.data_claim_name("alice/keeps")}} in pod["volumes"]
    assert {"name": "data", "mountPath": "/data"} in pod["containers"][0]["volumeMounts"]
    assert pod["securityContext"]["fsGroup"] == 1000  # the claim is the app user's in every Pod
    assert {"name": "HF_HOME", "value": "/data/.huggingface"} in pod["containers"][0]["env"]
    # no claim without storage
    assert not [o for o in km.objects(conf, spec("alice/plain"), "reg/x:1") if o["kind"] == "PersistentVolumeClaim"]


def test_the_validator_refuses_a_broken_manifest(tmp_path):
    # the check above can fail: an unknown field and a wrong type are both caught
    deployment = km.deployment(settings(tmp_path), spec(), "reg/x:1")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    deployment = km.deployment(settings(tmp_path), spec(), "reg/x:1")
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


def test_object_names_are_dns_labels_and_differ_for_ids_that_differ_only_in_case():
    names = {km.object_name(i) for i in ("alice/demo", "Alice/Demo", "alice/de-mo", "a" * 90 + "/" + "b" * 90)}
    assert len(names) == 4
    assert all(re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", n) for n in names)


def test_every_pod_carries_the_security_fences(tmp_path):
    conf = settings(tmp_path)
    deployment = km.deployment(conf, spec(disk_mb=300, tmp_mb=100, log_bytes=16 << 20), "reg/x:1")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    for container in pod["containers"] + pod["initContainers"]:
        assert container["securityContext"] == {
            "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}
        assert container["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi", "ephemeral-storage": "416Mi"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["home"]["emptyDir"] == {"sizeLimit": "300Mi"}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "100Mi"}
    assert pod["containers"][0]["readinessProbe"]["tcpSocket"] == {"port": "http"}


def test_the_network_policy_admits_only_the_gateway_and_fences_egress(tmp_path):
    conf = settings(tmp_path, **{"network.egress_allow": ["10.0.5.20/32"]})
    policy = km.network_policy(conf, spec())
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["spec"]["ingress"]
    # no Space to Space: the only peer is the gateway's Pods in the gateway's namespace
    assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "spacehooks"}},
                                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "spacehooks-gateway"}}}]
    dns, rest = policy["spec"]["egress"]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    v4, v6, allowed = rest["to"]
    denied = {ipaddress.ip_network(c) for c in conf["network.egress_deny"]}
    assert {ipaddress.ip_network(c) for c in v4["ipBlock"]["except"] + v6["ipBlock"]["except"]} == denied
    assert (v4["ipBlock"]["cidr"], v6["ipBlock"]["cidr"], allowed) == (
        "0.0.0.0/0", "::/0", {"ipBlock": {"cidr": "10.0.5.20/32"}})


def test_gpus_are_asked_for_as_the_extended_resource_on_a_matching_node(tmp_path):
    conf = settings(tmp_path, **{"kubernetes.node_selectors": {"nvidia.com/gpu": {"gpu.example/model": "a10g"}}})
    pod = km.pod_spec(conf, spec(**GPU), "reg/x:1")
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"gpu.example/model": "a10g"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeSelector" not in km.pod_spec(conf, spec(), "reg/x:1")


def test_knative_scales_to_zero_after_the_sleep_time(tmp_path):
    service = km.knative_service(settings(tmp_path, **{"kubernetes.knative": True}), spec(), "reg/x:1", 7200)
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert annotations["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] == "7200s"
    never = km.knative_service(settings(tmp_path), spec(), "reg/x:1", -1)
    assert never["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"
    app = service["spec"]["template"]["spec"]["containers"][0]
    assert app["ports"] == [{"name": "http1", "containerPort": 7860, "protocol": "TCP"}]
