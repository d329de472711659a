"""A Space's Kubernetes objects as plain dicts, made from its RunSpec: Deployment (or Knative
Service), Service, Secret, NetworkPolicy. Pure functions: no cluster, no I/O beyond reading a
host file a RunSpec mounts; `encode` gives the very bytes the engine sends.

Every fence a Podman container gets has its form here: uid 1000 and no root, no privilege
escalation, all capabilities dropped, seccomp RuntimeDefault, read-only root with home and /tmp
as size-capped emptyDirs (home refilled from the image at each start, as Podman's tmpfs copy-up
does), ephemeral-storage and memory/CPU limits, no service account token, no service links, and
a NetworkPolicy: only the gateway may connect, no Space to Space, no cluster-internal addresses.

A Space with storage gets a PersistentVolumeClaim of its tier's size mounted at /data (kept
while it sleeps, deleted with the Space). Its RunSpec's fixed id range (`userns`) exists
because Podman's blue and green share one host folder; in a cluster the claim is the Pods'
own volume and fsGroup 1000 gives it to uid 1000 in every Pod, so no host range is needed.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from pathlib import Path

from spacehooks.engine.spec import RunSpec

MANAGED = {"app.kubernetes.io/managed-by": "spacehooks", "app.kubernetes.io/name": "space"}
SPACE_LABEL = "spacehooks.space"  # label: the Space's object name (a Space id has a '/')
ANNOTATION = "spacehooks/"  # prefix of the RunSpec's labels kept verbatim as annotations
CONTAINER = "spacehooks/container"  # the RunSpec's name, on the Pod template
ROLLOUT = "spacehooks/rollout"
APP = "app"
# inert in a cluster; `podman kube play` 4.3 (which reads it from the Deployment's own
# annotations) runs a "once" init container and then, racing its exit, may fail to remove it
# ("container state improper"), while "always" runs it at each start, as home needs
PODMAN_INIT = {"io.podman.annotations.init.container.type": "always"}
GATEWAY_POD = {"app.kubernetes.io/name": "spacehooks-gateway"}


def object_name(space_id: str) -> str:
    """RFC 1035 label (Services need one): letters, digits, '-', 63 at most, and unique per
    Space: ids differing only in case or punctuation get different hashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", space_id.lower()).strip("-")
    digest = hashlib.sha256(space_id.encode()).hexdigest()[:8]
    return f"space-{slug[:45].rstrip('-')}-{digest}"


def labels(spec: RunSpec) -> dict:
    return {**MANAGED, SPACE_LABEL: object_name(spec.space_id)}


def annotations(spec: RunSpec) -> dict:
    return {ANNOTATION + key: str(value) for key, value in sorted(spec.labels.items())}


def image_ref(registry: str, image: str) -> str:
    """The registry's name for a locally built image: `localhost/spaces/a/b:3` -> `REG/spaces/a/b:3`."""
    local = image.removeprefix("localhost/")
    return f"{registry.rstrip('/')}/{local}" if registry else image


def _meta(settings, spec: RunSpec, name: str) -> dict:
    return {"name": name, "namespace": settings["kubernetes.namespace"], "labels": labels(spec),
            "annotations": annotations(spec)}


def _quantity_mb(mb) -> str:
    return f"{int(mb)}Mi"


def _resources(settings, spec: RunSpec) -> dict:
    # ephemeral storage: home and /tmp (emptyDirs on the node's disk) plus the app's log
    storage = int(spec.disk_mb) + int(spec.tmp_mb) + max(1, int(spec.log_bytes) // (1 << 20))
    limits = {"cpu": f"{int(round(float(spec.cpus) * 1000))}m", "memory": _quantity_mb(spec.memory_mb),
              "ephemeral-storage": _quantity_mb(storage)}
    if spec.gpus:
        limits[gpu_resource(settings, spec)] = str(int(spec.gpus))
    # requests = limits: Guaranteed QoS, and the scheduler only places what really fits
    return {"limits": limits, "requests": dict(limits)}


def gpu_resource(settings, spec: RunSpec) -> str:
    return settings["kubernetes.gpu_resource"] or spec.gpu_kind or "nvidia.com/gpu"


def _security(spec: RunSpec) -> dict:
    uid = int(spec.user)
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
            "allowPrivilegeEscalation": not spec.no_new_privileges,
            "readOnlyRootFilesystem": bool(spec.read_only_root),
            "capabilities": {"drop": list(spec.cap_drop)}, "seccompProfile": {"type": "RuntimeDefault"}}


def _files_secret(spec: RunSpec) -> str:
    return object_name(spec.space_id) + "-files"


def file_data(spec: RunSpec) -> dict[str, bytes]:
    """Each mounted file's bytes by key (a host file such as the CA bundle is read here)."""
    data = {}
    for i, mount in enumerate(spec.files):
        data[f"file-{i}"] = mount.content if mount.content is not None else Path(mount.source).read_bytes()
    return data


def data_claim_name(space_id: str) -> str:
    return object_name(space_id) + "-data"


def data_claim(settings, spec: RunSpec) -> dict:
    """/data: ReadWriteOnce (the surge Pod of a rolling update lands on the same node)."""
    claim = {"accessModes": ["ReadWriteOnce"],
             "resources": {"requests": {"storage": _quantity_mb(spec.data.size_mb)}}}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(settings, spec, data_claim_name(spec.space_id)), "spec": claim}


def pod_spec(settings, spec: RunSpec, image: str) -> dict:
    home, uid = spec.home, int(spec.user)
    mounts = [{"name": "home", "mountPath": home}, {"name": "tmp", "mountPath": "/tmp"},
              {"name": "shm", "mountPath": "/dev/shm"}]
    mounts += [{"name": "files", "mountPath": m.target, "subPath": f"file-{i}", "readOnly": True}
               for i, m in enumerate(spec.files)]
    if spec.data is not None:
        mounts.append({"name": "data", "mountPath": spec.data.target})
    app = {
        "name": APP, "image": image, "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": int(spec.app_port), "protocol": "TCP"}],
        "env": [{"name": k, "value": str(v)} for k, v in sorted(spec.env.items())],
        "resources": _resources(settings, spec), "securityContext": _security(spec), "volumeMounts": mounts,
        # ready once the app answers TCP on its port, as the Podman runner waits for HTTP
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 2, "failureThreshold": 3},
    }
    if spec.secrets:
        app["envFrom"] = [{"secretRef": {"name": object_name(spec.space_id)}}]
    # home is an emptyDir (read-only root): refilled from the image's home at each start
    copy = {"name": "home", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["cp", "-R", f"{home.rstrip('/')}/.", "/spacehooks-home/"],
            "resources": _resources(settings, spec), "securityContext": _security(spec),
            "volumeMounts": [{"name": "home", "mountPath": "/spacehooks-home"}]}
    volumes = [{"name": "home", "emptyDir": {"sizeLimit": _quantity_mb(spec.disk_mb)}},
               {"name": "tmp", "emptyDir": {"sizeLimit": _quantity_mb(spec.tmp_mb)}},
               {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": _quantity_mb(spec.shm_mb)}}]
    if spec.files:
        volumes.append({"name": "files", "secret": {"secretName": _files_secret(spec), "defaultMode": 0o444}})
    if spec.data is not None:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": data_claim_name(spec.space_id)}})
    pod = {
        "automountServiceAccountToken": False, "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [copy], "containers": [app], "volumes": volumes,
        "terminationGracePeriodSeconds": 10,
    }
    if settings["kubernetes.user_namespaces"]:
        pod["hostUsers"] = False
    if settings["kubernetes.pull_secret"]:
        pod["imagePullSecrets"] = [{"name": settings["kubernetes.pull_secret"]}]
    if spec.gpus:
        kind = gpu_resource(settings, spec)
        selector = settings["kubernetes.node_selectors"].get(spec.gpu_kind or kind) or {}
        if selector:
            pod["nodeSelector"] = {str(k): str(v) for k, v in selector.items()}
        pod["tolerations"] = [{"key": kind, "operator": "Exists", "effect": "NoSchedule"}]
    return pod


def deployment(settings, spec: RunSpec, image: str, *, replicas: int = 1, recreate: bool = False) -> dict:
    name = object_name(spec.space_id)
    meta = _meta(settings, spec, name)
    meta["annotations"].update({ROLLOUT: "recreate" if recreate else "rolling", **PODMAN_INIT})
    # a new version starts beside the old one, which serves until the new one is ready (blue-
    # green); a GPU Space on a cluster with no spare GPU is replaced instead (down meanwhile)
    strategy = {"type": "Recreate"} if recreate else {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    template_meta = {"labels": labels(spec), "annotations": {**annotations(spec), CONTAINER: spec.name}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": replicas, "revisionHistoryLimit": 2, "strategy": strategy,
                     "selector": {"matchLabels": {SPACE_LABEL: name}},
                     "template": {"metadata": template_meta, "spec": pod_spec(settings, spec, image)}}}


def knative_service(settings, spec: RunSpec, image: str, sleep_seconds: int) -> dict:
    """Knative scales it to zero when idle and its activator holds a request until it wakes."""
    name = object_name(spec.space_id)
    pod = pod_spec(settings, spec, image)
    # Knative's PodSpec subset: its own grace period, a port named http1, probes by number
    pod.pop("enableServiceLinks", None)
    pod.pop("terminationGracePeriodSeconds", None)
    app = pod["containers"][0]
    app["ports"] = [{"name": "http1", "containerPort": int(spec.app_port), "protocol": "TCP"}]
    app["readinessProbe"]["tcpSocket"] = {"port": int(spec.app_port)}
    scale = {"autoscaling.knative.dev/min-scale": "0", "autoscaling.knative.dev/max-scale": "1",
             CONTAINER: spec.name}
    if sleep_seconds > 0:
        scale["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] = f"{int(sleep_seconds)}s"
    else:
        scale["autoscaling.knative.dev/min-scale"] = "1"
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": _meta(settings, spec, name),
            "spec": {"template": {"metadata": {"labels": labels(spec), "annotations": {**annotations(spec), **scale}},
                                  "spec": pod}}}


def service(settings, spec: RunSpec) -> dict:
    name = object_name(spec.space_id)
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(settings, spec, name),
            "spec": {"type": settings["kubernetes.service_type"], "selector": {SPACE_LABEL: name},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}


def secrets(settings, spec: RunSpec) -> list[dict]:
    """The Space's secrets (as env) and mounted files; none when it has neither."""
    out = []
    if spec.secrets:
        out.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": _meta(settings, spec, object_name(spec.space_id)),
                    "stringData": {k: str(v) for k, v in sorted(spec.secrets.items())}})
    if spec.files:
        import base64
        out.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": _meta(settings, spec, _files_secret(spec)),
                    "data": {k: base64.b64encode(v).decode() for k, v in file_data(spec).items()}})
    return out


def _blocks(denied: list[str], allowed: list[str]) -> list[dict]:
    """ipBlocks for everything outside `denied`, per address family, plus the allowed holes."""
    peers = []
    for everything in ("0.0.0.0/0", "::/0"):
        family = ipaddress.ip_network(everything).version
        holes = sorted(str(n) for n in (ipaddress.ip_network(d, strict=False) for d in denied)
                       if n.version == family and n.prefixlen > 0)
        peers.append({"ipBlock": {"cidr": everything, "except": holes} if holes else {"cidr": everything}})
    peers += [{"ipBlock": {"cidr": str(ipaddress.ip_network(a, strict=False))}} for a in allowed]
    return peers


def network_policy(settings, spec: RunSpec) -> dict:
    name = object_name(spec.space_id)
    gateway = {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": settings["kubernetes.gateway_namespace"]}},
        "podSelector": {"matchLabels": dict(GATEWAY_POD)}}
    sources = [gateway] + [{"ipBlock": {"cidr": c}} for c in settings["kubernetes.gateway_cidrs"]]
    dns = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                   "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
           "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    egress = {"to": _blocks(settings["network.egress_deny"], settings["network.egress_allow"])}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta(settings, spec, name),
            "spec": {"podSelector": {"matchLabels": {SPACE_LABEL: name}}, "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": "http"}]}],
                     "egress": [dns, egress]}}


def objects(settings, spec: RunSpec, image: str, *, recreate: bool = False, replicas: int = 1,
            sleep_seconds: int = 0) -> list[dict]:
    """Everything a Space is, in the order to apply it: what the Pod refers to comes first."""
    first = secrets(settings, spec) + [network_policy(settings, spec)]
    if spec.data is not None:
        first.append(data_claim(settings, spec))
    if settings["kubernetes.knative"]:
        return first + [knative_service(settings, spec, image, sleep_seconds)]
    return first + [service(settings, spec), deployment(settings, spec, image, replicas=replicas, recreate=recreate)]


def kind_of(obj: dict) -> str:
    """The API client's kind: Knative's Service is not the core one."""
    return "KnativeService" if obj["apiVersion"].startswith("serving.knative.dev/") else obj["kind"]


def encode(obj: dict) -> bytes:
    """The bytes sent to the API server (and played by `podman kube play` in the tests)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
