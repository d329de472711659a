"""The Kubernetes engine (`engine: kubernetes`): each Space is a Deployment of one replica (or a
Knative Service), a Service, a Secret and a NetworkPolicy in `kubernetes.namespace`.

Images are still built by the Podman service (the builder's layers, fences and caches stay as
they are) and pushed to `kubernetes.registry`; builds, images and probes go to the Podman engine.
A "container" of the interface is one version of a Space: run() rolls the Space's Deployment
out to it (the old Pod serves until the new one is ready), and its name sits on the Pod template
(kubemanifests.CONTAINER) so state(), stop() and remove() find the Space again.
"""
from __future__ import annotations

import datetime
import time
from typing import Callable, Iterator, Mapping

from spacehooks import stages
from spacehooks.engine import hostwait, kubeapi, kubeimages, kubemanifests as km, kubestatus
from spacehooks.engine.base import Engine, NotFound, Unreachable
from spacehooks.engine.spec import ContainerState, ContainerStats, EngineInfo, Readiness, RunSpec
from spacehooks.errors import SpaceError

MANAGED = "app.kubernetes.io/managed-by=spacehooks"
LOG_TAIL = 30
READY_POLL = 1.0  # one Pod list per second while a version starts: the API server is shared


def make(settings) -> "KubernetesEngine":
    if not settings["kubernetes.registry"]:
        raise SpaceError("engine kubernetes needs a registry the cluster pulls Space images from",
                         hint="set kubernetes.registry, like registry.example.com/spaces")
    return KubernetesEngine(settings, kubeapi.connect(settings))


def matches(labels: Mapping[str, str], label: str) -> bool:
    key, sep, value = label.partition("=")
    return key in labels and (not sep or labels[key] == value)


class KubernetesEngine(kubeimages.PodmanImages, Engine):
    name = "kubernetes"
    host_fences = False  # the scheduler places GPUs, the Space's NetworkPolicy fences it

    def __init__(self, settings, api: kubeapi.Api, images: Engine | None = None):
        self.settings, self.api = settings, api
        self._images = images
        self.notes: dict[str, str] = {}  # Space id -> why its last rollout replaced the old Pod

    # -- the service -------------------------------------------------------------------------
    def ping(self) -> str:
        try:
            return "Kubernetes " + str(self.api.request("GET", "/version").get("gitVersion", "?"))
        except kubeapi.ApiError as exc:
            raise Unreachable(exc.message, hint=exc.hint) from exc

    def info(self) -> EngineInfo:
        version = self.ping().removeprefix("Kubernetes ")
        return EngineInfo(name="kubernetes", version=version, runtime="kubernetes")

    # -- Spaces ---------------------------------------------------------------------------
    def run(self, spec: RunSpec) -> str:
        recreate = self._replace_instead(spec)
        objects = km.objects(self.settings, spec, self.registry_ref(spec.image), recreate=recreate,
                             sleep_seconds=int(self.settings["run.sleep_seconds"]))
        for obj in objects:
            self.api.apply(km.kind_of(obj), obj["metadata"]["name"], km.encode(obj))
        # secrets the Space no longer has must not linger in the cluster
        kept = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
        base = km.object_name(spec.space_id)
        for name in {base, base + "-files"} - kept:
            self.api.delete("Secret", name)
        return spec.name

    def _replace_instead(self, spec: RunSpec) -> bool:
        """A GPU Space overlaps its versions only when the cluster has the GPUs for both."""
        self.notes.pop(spec.space_id, None)
        if not spec.gpus or self.api.get("Deployment", km.object_name(spec.space_id)) is None:
            return False
        resource = km.gpu_resource(self.settings, spec)
        spare = self.spare_gpus(resource, self.settings["kubernetes.node_selectors"].get(spec.gpu_kind or resource) or {})
        if spare >= spec.gpus:
            return False
        self.notes[spec.space_id] = _replace_note(resource)
        return True

    def spare_gpus(self, resource: str, node_labels: Mapping[str, str]) -> int:
        """GPUs allocatable on matching nodes less those Pods hold; 0 when the API will not say."""
        selector = ",".join(f"{k}={v}" for k, v in node_labels.items())
        try:
            nodes = self.api.request("GET", "/api/v1/nodes", params={"labelSelector": selector} if selector else None)
            pods = self.api.request("GET", "/api/v1/pods",
                                    params={"fieldSelector": "status.phase!=Succeeded,status.phase!=Failed"})
        except kubeapi.ApiError:
            return 0
        usable = {n["metadata"]["name"]: int((n.get("status") or {}).get("allocatable", {}).get(resource, 0))
                  for n in nodes.get("items", []) if not (n.get("spec") or {}).get("unschedulable")}
        used = sum(int(((c.get("resources") or {}).get("limits") or {}).get(resource, 0))
                   for p in pods.get("items", []) if (p.get("spec") or {}).get("nodeName") in usable
                   for c in p["spec"].get("containers", []))
        return sum(usable.values()) - used

    def rollout_note(self, space_id: str) -> str | None:
        """What the Space's page says when its last rollout replaced the old Pod (read back from
        the Deployment: engines are made per call, the cluster remembers)."""
        deployment = self.api.get("Deployment", km.object_name(space_id)) or {}
        if (deployment.get("metadata") or {}).get("annotations", {}).get(km.ROLLOUT) != "recreate":
            return None
        limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        resource = next((r for r in limits if r not in ("cpu", "memory", "ephemeral-storage")), "GPU")
        return _replace_note(resource)

    def _owners(self) -> list[tuple[str, dict]]:
        kinds = ("KnativeService",) if self.settings["kubernetes.knative"] else ("Deployment",)
        return [(kind, obj) for kind in kinds for obj in self.api.list(kind, MANAGED)]

    def _owner(self, name: str) -> tuple[str, dict] | None:
        for kind, obj in self._owners():
            if _template_annotations(obj).get(km.CONTAINER) == name:
                return kind, obj
        return None

    def _scale(self, name: str, replicas: int) -> None:
        owner = self._owner(name)
        if owner is None:
            raise NotFound(f"no Space in namespace {self.api.namespace} runs {name}")
        kind, obj = owner
        if kind == "Deployment":
            self.api.merge_patch(kind, obj["metadata"]["name"], {"spec": {"replicas": replicas}})
        # a Knative Service scales itself: to zero when idle, up on the next request

    def start(self, name: str) -> None:
        self._scale(name, 1)

    def stop(self, name: str, timeout: float = 10) -> None:
        self._scale(name, 0)

    def remove(self, name: str, stop_timeout: float = 10) -> None:
        owner = self._owner(name)
        if owner is None:
            return  # an older version: the rollout that replaced it removed its Pod
        kind, obj = owner
        if kind == "Deployment" and self._roll_back(obj, name):
            return
        if kind == "Deployment":
            # the runner removes the serving version to sleep or stop a Space: scaled to zero,
            # its objects stay for the wake; remove_all() deletes a Space
            self.api.merge_patch(kind, obj["metadata"]["name"], {"spec": {"replicas": 0}})
            return
        self._delete_space(obj["metadata"]["name"], kind)  # Knative makes it anew on the wake

    def _roll_back(self, deployment: dict, name: str) -> bool:
        """A new version removed before it took over: the old one, still serving, stays."""
        base = deployment["metadata"]["name"]
        for rs in self.api.list("ReplicaSet", f"{km.SPACE_LABEL}={base}"):
            template = (rs.get("spec") or {}).get("template") or {}
            old = ((template.get("metadata") or {}).get("annotations") or {}).get(km.CONTAINER)
            if old and old != name and int((rs.get("status") or {}).get("readyReplicas") or 0) > 0:
                template["metadata"].get("labels", {}).pop("pod-template-hash", None)
                self.api.merge_patch("Deployment", base, {"spec": {"template": template}})
                return True
        return False

    def _delete_space(self, base: str, kind: str, data: bool = False) -> None:
        """The Space's objects; its /data claim only when the Space goes (data), never on a sleep."""
        extra = (("PersistentVolumeClaim", base + "-data"),) if data else ()
        for k, n in ((kind, base), ("Service", base), ("Secret", base), ("Secret", base + "-files"),
                     ("NetworkPolicy", base), *extra):
            if not (k == "Service" and kind == "KnativeService"):
                self.api.delete(k, n)

    def _pods(self) -> list[dict]:
        return self.api.list("Pod", MANAGED)

    def _pod(self, name: str) -> dict | None:
        pods = [p for p in self._pods() if kubestatus.container_name(p) == name]
        pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        return pods[-1] if pods else None

    def state(self, name: str) -> ContainerState | None:
        return self.states_by_name().get(name)

    def states_by_name(self) -> dict[str, ContainerState]:
        out = {}
        for pod in sorted(self._pods(), key=lambda p: p["metadata"].get("creationTimestamp") or ""):
            state = kubestatus.state(pod)
            out[state.name] = state
        for kind, obj in self._owners():  # no Pod (yet): asleep, or the cluster is about to make it
            name = _template_annotations(obj).get(km.CONTAINER)
            if name and name not in out:
                asleep = not (obj.get("spec") or {}).get("replicas", 1)
                labels = {k[len(km.ANNOTATION):]: v for k, v in _template_annotations(obj).items()
                          if k.startswith(km.ANNOTATION) and k != km.CONTAINER}
                out[name] = ContainerState(name=name, status="stopped" if asleep else "created", running=False,
                                           labels=labels)
        return out

    def states(self, label: str) -> dict[str, ContainerState]:
        return {n: s for n, s in self.states_by_name().items() if matches(s.labels, label)}

    def containers(self, label: str) -> list[ContainerState]:
        return list(self.states(label).values())

    def verdict(self, name: str) -> kubestatus.Verdict | None:
        """The stage the cluster puts this version in and why (log tail under a crash)."""
        pod = self._pod(name)
        if pod is None:
            return None
        resources = tuple({self.settings["kubernetes.gpu_resource"] or "nvidia.com/gpu",
                           *self.settings["kubernetes.node_selectors"]})
        found = kubestatus.verdict(pod, resources)
        if found.wants_log:
            text = self.log_tail(name, LOG_TAIL).rstrip()
            tail = "log tail:\n" + text if text else "log tail: (empty)"
            found = kubestatus.Verdict(found.stage, f"{found.reason}\n{tail}", True)
        return found

    def stats(self) -> dict[str, ContainerStats]:
        return {}  # the metrics API gives rates, not the totals ContainerStats holds

    def log_tail(self, name: str, lines: int) -> str:
        pod = self._pod(name)
        if pod is None:
            return ""
        app = next((c for c in (pod.get("status") or {}).get("containerStatuses") or []
                    if c.get("name") == km.APP), {})
        previous = bool(app.get("restartCount")) and "running" not in (app.get("state") or {})
        try:
            return self.api.log(pod["metadata"]["name"], km.APP, lines, previous=previous)
        except kubeapi.ApiError:
            return ""

    def follow_logs(self, name: str, since: float = 0, follow: bool = True) -> Iterator[bytes]:
        pod = self._pod(name)
        if pod is None:
            return iter(())
        params = {"container": km.APP, "follow": "true" if follow else "false"}
        if since:
            params["sinceTime"] = datetime.datetime.fromtimestamp(since, datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        return self.api.stream(self.api.path("Pod", pod["metadata"]["name"], "log"), params)

    def remove_all(self, label: str, image_repo: str) -> None:
        for kind, obj in self._owners():
            labels = {k[len(km.ANNOTATION):]: v for k, v in (obj["metadata"].get("annotations") or {}).items()
                      if k.startswith(km.ANNOTATION)}
            if matches(labels, label):
                self._delete_space(obj["metadata"]["name"], kind, data=True)
        self.images_engine.remove_all(label, image_repo)

    def address(self, space_id: str, name: str | None = None, host_port: int | None = None) -> tuple[str, int]:
        """(host, port) the gateway connects to for this Space: its Service (the version behind
        it is the Deployment's business, so name and host_port do not matter here)."""
        fixed = self.settings["kubernetes.addresses"].get(space_id)
        if fixed:
            return _host_port(str(fixed), space_id)
        base = km.object_name(space_id)
        template = self.settings["kubernetes.address"]
        node_port = ""
        if "{node_port}" in template:
            service = self.api.get("Service", base) or {}
            node_port = str(((service.get("spec") or {}).get("ports") or [{}])[0].get("nodePort", ""))
        return _host_port(template.format(service=base, namespace=self.api.namespace, node_port=node_port), space_id)

    def wait_ready(self, name: str, host_port: int, timeout: float,
                   on_wait: Callable[[str], None] = lambda note: None) -> Readiness:
        """Ready is the cluster's word (the readiness probe on the app's port passed): the
        gateway, not the runner, is where the Service can be reached from."""
        deadline = time.monotonic() + timeout
        note = ""
        while True:
            found = self.verdict(name)
            if found is None and self.state(name) is None:
                return Readiness(False, stages.RUNTIME_ERROR, f"the version {name} was removed while the app started")
            if found is not None and found.stage == stages.RUNNING:
                return Readiness(True)
            if found is not None and found.stage == stages.RUNTIME_ERROR:
                return Readiness(False, found.stage, found.reason)
            if found is not None and found.reason and found.reason != note:
                note = found.reason
                on_wait(note)
            if time.monotonic() > deadline:
                why = f"the app was not ready within {timeout:.0f}s (startup_duration_timeout)"
                return Readiness(False, stages.RUNTIME_ERROR,
                                 hostwait.with_log_tail(self, name, why + (f"; {note}" if note else "")))
            time.sleep(READY_POLL)

def _host_port(text: str, space_id: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise SpaceError(f"the address {text!r} for {space_id} is not host:port",
                         hint="see kubernetes.address and kubernetes.addresses")
    return host.strip("[]"), int(port)


def _replace_note(resource: str) -> str:
    return (f"no spare {resource} in the cluster for a second copy: the new version replaces the old one, "
            "and the Space is down while it starts")


def _template_annotations(obj: dict) -> dict:
    return (((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("annotations") or {}
