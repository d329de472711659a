"""What a Pod's status says about its Space: the ContainerState the engine interface returns,
and the stage with the reason a user reads (the same words the Podman engine's Spaces show).

Kubernetes restarts a crashed app itself (CrashLoopBackOff, with its own backoff), so a Pod
whose app keeps exiting is a RUNTIME_ERROR with the exit (or the memory kill) and the log tail;
a Pod the scheduler cannot place for lack of GPUs is waiting for a GPU node, not an error.
"""
from __future__ import annotations

from dataclasses import dataclass

from spacehooks import stages
from spacehooks.engine import kubemanifests
from spacehooks.engine.spec import ContainerState

# the Podman engine's words (supervise.OOM_REASON; a test keeps them equal)
OOM_REASON = "the app was killed for using more memory than its limit (memory limit reached)"
PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable")
CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")


@dataclass(frozen=True)
class Verdict:
    stage: str  # APP_STARTING, RUNNING or RUNTIME_ERROR
    reason: str = ""  # what the Space's page says; "" when all is well
    wants_log: bool = False  # the app ran and stopped: its log tail belongs under the reason


def container_name(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return (meta.get("annotations") or {}).get(kubemanifests.CONTAINER) or meta.get("name", "")


def _statuses(pod: dict, key: str = "containerStatuses") -> list[dict]:
    return (pod.get("status") or {}).get(key) or []


def _app(pod: dict) -> dict:
    for status in _statuses(pod):
        if status.get("name") == kubemanifests.APP:
            return status
    return {}


def _terminated(status: dict) -> dict:
    return (status.get("state") or {}).get("terminated") or (status.get("lastState") or {}).get("terminated") or {}


def state(pod: dict) -> ContainerState:
    app = _app(pod)
    now = app.get("state") or {}
    ended = _terminated(app)
    reason = (now.get("waiting") or {}).get("reason")
    # a crashed app is "exited", as the Podman engine says, so the runner and supervisor see it
    word = "running" if "running" in now else "exited" if "terminated" in now or reason == "CrashLoopBackOff" else (
        reason or (pod.get("status") or {}).get("phase") or "Pending")
    prefix = kubemanifests.ANNOTATION
    meta = pod.get("metadata") or {}
    labels = {k[len(prefix):]: v for k, v in (meta.get("annotations") or {}).items()
              if k.startswith(prefix) and k != kubemanifests.CONTAINER}
    return ContainerState(
        name=container_name(pod), status=word, running="running" in now,
        exit_code=ended.get("exitCode"), oom_killed=ended.get("reason") == "OOMKilled",
        started_at=(now.get("running") or {}).get("startedAt") or ended.get("startedAt"),
        finished_at=ended.get("finishedAt"), labels=labels, image=app.get("image"),
        id=meta.get("uid"))


def verdict(pod: dict, gpu_resources: tuple[str, ...] = ("nvidia.com/gpu",)) -> Verdict:
    """The stage this Pod puts its Space in, and why."""
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            message = cond.get("message") or cond.get("reason") or "not scheduled"
            if any(f"Insufficient {r}" in message for r in gpu_resources):
                return Verdict(stages.APP_STARTING, f"waiting for a GPU node: {message}")
            return Verdict(stages.APP_STARTING, f"waiting for a node: {message}")
    for key, what in (("initContainerStatuses", "the step that copies the app's home"), ("containerStatuses", "the app")):
        for cs in _statuses(pod, key):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason, message = waiting.get("reason", ""), waiting.get("message", "")
            if reason in PULL_ERRORS:
                return Verdict(stages.RUNTIME_ERROR, f"the cluster cannot pull the image {cs.get('image', '')}: "
                                                f"{reason}" + (f" ({message})" if message else ""))
            if reason in CONFIG_ERRORS:
                return Verdict(stages.RUNTIME_ERROR, f"the cluster cannot start {what}: {reason}"
                                                + (f" ({message})" if message else ""))
            ended = _terminated(cs)
            crashed = reason == "CrashLoopBackOff" or (status.get("phase") == "Failed" and ended)
            if key == "initContainerStatuses" and ended and ended.get("exitCode") not in (0, None):
                crashed = True
            if crashed:
                why = OOM_REASON if ended.get("reason") == "OOMKilled" else (
                    f"{'the app' if key == 'containerStatuses' else what} exited with code {ended.get('exitCode')}")
                restarts = int(cs.get("restartCount") or 0)
                detail = f" (restarted {restarts} times by the cluster)" if restarts else ""
                return Verdict(stages.RUNTIME_ERROR, why + detail, wants_log=True)
    app = _app(pod)
    if "running" in (app.get("state") or {}) and app.get("ready"):
        return Verdict(stages.RUNNING)
    return Verdict(stages.APP_STARTING)
