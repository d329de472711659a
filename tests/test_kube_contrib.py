"""contrib/kubernetes/ (spacehooks itself in a cluster): every document valid for the pinned
Kubernetes, its settings loadable, and in step with what the engine expects of it."""
from pathlib import Path

import kubernetes_validate
import yaml

from spacehooks import config
from spacehooks.engine import kubeapi, kubemanifests as km

CONTRIB = Path(__file__).resolve().parents[1] / "contrib" / "kubernetes"


def documents() -> list[dict]:
    return [doc for path in sorted(CONTRIB.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_every_document_is_valid_for_the_pinned_kubernetes():
    docs = documents()
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    assert {d["kind"] for d in docs} >= {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap",
                                         "PersistentVolumeClaim", "Deployment", "Service", "Ingress"}


def test_its_settings_load_and_name_the_engine_and_namespaces_it_creates(tmp_path):
    (configmap,) = [d for d in documents() if d["kind"] == "ConfigMap"]
    path = tmp_path / "config.yaml"
    path.write_text(configmap["data"]["config.yaml"])
    settings = config.load(path=path, home=tmp_path)
    namespaces = {d["metadata"]["name"] for d in documents() if d["kind"] == "Namespace"}
    assert settings["engine"] == "kubernetes"
    assert {settings["kubernetes.namespace"], settings["kubernetes.gateway_namespace"]} == namespaces


def test_the_gateway_pods_are_the_ones_space_network_policies_admit():
    (gateway,) = [d for d in documents() if d["kind"] == "Deployment" and d["metadata"]["name"] == "spacehooks-gateway"]
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert km.GATEWAY_POD.items() <= labels.items()
    assert gateway["metadata"]["namespace"] == config._BY_KEY["kubernetes.gateway_namespace"].default


def test_the_role_allows_every_resource_the_engine_touches():
    (role,) = [d for d in documents() if d["kind"] == "Role"]
    granted = {(group, resource) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"]}
    for kind, path in kubeapi.PATHS.items():
        group = "" if path == "/api/v1" else path.split("/")[2]
        assert (group, kubeapi.PLURALS[kind]) in granted, kind
    assert ("", "pods/log") in granted
