"""A thin client for the Kubernetes REST API: kubeconfig or in-cluster service account, JSON in
and out, server-side apply. Only what the Kubernetes engine needs, with the standard library
alone: the official client pulls in some 20 packages for a dozen calls.

Every failure becomes a SpaceError naming the server and what it said, so a push tells the
truth about the cluster instead of a traceback.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
import urllib.parse
from pathlib import Path

from spacehooks.errors import SpaceError

IN_CLUSTER = Path("/var/run/secrets/kubernetes.io/serviceaccount")
FIELD_MANAGER = "spacehooks"
TIMEOUT = 30.0
# API group path of each kind the engine handles
PATHS = {
    "Deployment": "/apis/apps/v1", "Service": "/api/v1", "Secret": "/api/v1", "Pod": "/api/v1",
    "NetworkPolicy": "/apis/networking.k8s.io/v1", "KnativeService": "/apis/serving.knative.dev/v1",
    "ReplicaSet": "/apis/apps/v1", "PersistentVolumeClaim": "/api/v1",
}
PLURALS = {"Deployment": "deployments", "Service": "services", "Secret": "secrets", "Pod": "pods",
           "NetworkPolicy": "networkpolicies", "KnativeService": "services", "ReplicaSet": "replicasets",
           "PersistentVolumeClaim": "persistentvolumeclaims"}


class ApiError(SpaceError):
    def __init__(self, status: int, message: str, *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


class Api:
    """One cluster, one namespace. `server` is the API's base URL (https://host:6443)."""

    def __init__(self, server: str, namespace: str, *, context: ssl.SSLContext | None = None,
                 token: str | None = None):
        url = urllib.parse.urlsplit(server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise SpaceError(f"Kubernetes API server {server!r} is not an http(s) URL",
                             hint="check `server:` of the cluster in the kubeconfig")
        self.server, self.namespace, self.token = server.rstrip("/"), namespace, token
        self._url, self._context = url, context

    def _connection(self) -> http.client.HTTPConnection:
        port = self._url.port
        if self._url.scheme == "https":
            return http.client.HTTPSConnection(self._url.hostname, port or 443, timeout=TIMEOUT,
                                               context=self._context)
        return http.client.HTTPConnection(self._url.hostname, port or 80, timeout=TIMEOUT)

    def request(self, method: str, path: str, body: bytes | None = None, *, params: dict | None = None,
                content_type: str = "application/json", raw: bool = False):
        """The decoded JSON answer (or text when raw); ApiError for any status >= 400."""
        target = self._url.path.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
        headers = {"Accept": "application/json", "User-Agent": "spacehooks"}
        if body is not None:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = self._connection()
        try:
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(0, f"cannot reach the Kubernetes API at {self.server}: {exc}",
                           hint="check the cluster is up and `kubernetes.kubeconfig` points at it") from exc
        finally:
            conn.close()
        if response.status >= 400:
            raise _error(self.server, method, path, response.status, data)
        if raw:
            return data.decode(errors="replace")
        return json.loads(data) if data else {}

    # -- objects -------------------------------------------------------------------------------
    def path(self, kind: str, name: str = "", sub: str = "") -> str:
        base = f"{PATHS[kind]}/namespaces/{self.namespace}/{PLURALS[kind]}"
        return base + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    def apply(self, kind: str, name: str, body: bytes, *, dry_run: bool = False) -> dict:
        """Server-side apply of one manifest, sent as these very bytes (JSON is YAML)."""
        params = {"fieldManager": FIELD_MANAGER, "force": "true", **({"dryRun": "All"} if dry_run else {})}
        return self.request("PATCH", self.path(kind, name), body, params=params,
                            content_type="application/apply-patch+yaml")

    def get(self, kind: str, name: str) -> dict | None:
        try:
            return self.request("GET", self.path(kind, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, selector: str = "") -> list[dict]:
        return self.request("GET", self.path(kind), params={"labelSelector": selector} if selector else None
                            ).get("items", [])

    def merge_patch(self, kind: str, name: str, patch: dict) -> dict:
        return self.request("PATCH", self.path(kind, name), json.dumps(patch).encode(),
                            content_type="application/merge-patch+json")

    def delete(self, kind: str, name: str) -> bool:
        """False when it was gone already."""
        try:
            self.request("DELETE", self.path(kind, name), json.dumps(
                {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}).encode())
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def stream(self, path: str, params: dict):
        """The answer's body chunk by chunk as it comes (a followed log); nothing after an error."""
        conn = self._connection()
        conn.timeout = None
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            conn.request("GET", self._url.path.rstrip("/") + path + "?" + urllib.parse.urlencode(params),
                         headers=headers)
            response = conn.getresponse()
            if response.status >= 400:
                return
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    return
                yield chunk
        except (OSError, http.client.HTTPException):
            return
        finally:
            conn.close()

    def log(self, pod: str, container: str, lines: int, previous: bool = False) -> str:
        params = {"container": container, "tailLines": str(lines)}
        if previous:
            params["previous"] = "true"
        return self.request("GET", self.path("Pod", pod, "log"), params=params, raw=True)


def _error(server: str, method: str, path: str, status: int, data: bytes) -> ApiError:
    try:
        message = json.loads(data).get("message") or data.decode(errors="replace")
    except (ValueError, AttributeError):
        message = data.decode(errors="replace").strip()[:500]
    hint = {401: "the kubeconfig's credentials were refused: renew the token or certificate",
            403: "give spacehooks' account the Role in contrib/kubernetes/rbac.yaml in this namespace"
            }.get(status)
    return ApiError(status, f"Kubernetes API {method} {path}: {status} {message}", hint=hint)


# -- connecting --------------------------------------------------------------------------------
def connect(settings) -> Api:
    """From `kubernetes.kubeconfig` (or $KUBECONFIG, ~/.kube/config), else the Pod's service account."""
    namespace = settings["kubernetes.namespace"]
    path = settings["kubernetes.kubeconfig"] or os.environ.get("KUBECONFIG", "")
    if not path and (Path.home() / ".kube" / "config").exists():
        path = str(Path.home() / ".kube" / "config")
    if path:
        return from_kubeconfig(Path(path), settings["kubernetes.context"], namespace)
    if (IN_CLUSTER / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster(namespace)
    raise SpaceError("engine kubernetes: no kubeconfig and not running in a cluster",
                     hint="set `kubernetes.kubeconfig` (or KUBECONFIG), or run spacehooks in a Pod "
                          "with a service account (contrib/kubernetes/)")


def in_cluster(namespace: str) -> Api:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    context = ssl.create_default_context(cafile=str(IN_CLUSTER / "ca.crt"))
    host = f"[{host}]" if ":" in host else host
    return Api(f"https://{host}:{port}", namespace, context=context,
               token=(IN_CLUSTER / "token").read_text().strip())


def from_kubeconfig(path: Path, context_name: str, namespace: str) -> Api:
    import yaml
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SpaceError(f"kubeconfig {path}: cannot read it: {exc}") from exc
    name = context_name or config.get("current-context")

    def pick(section: str, wanted: str) -> dict:
        for item in config.get(section) or []:
            if item.get("name") == wanted:
                return item.get(section[:-1]) or {}
        raise SpaceError(f"kubeconfig {path}: no {section[:-1]} named {wanted!r}",
                         hint="set `kubernetes.context` to one of its contexts")
    if not name:
        raise SpaceError(f"kubeconfig {path}: no current-context", hint="set `kubernetes.context`")
    ctx = pick("contexts", name)
    cluster, user = pick("clusters", ctx.get("cluster", "")), pick("users", ctx.get("user", ""))
    if "exec" in user or "auth-provider" in user:
        raise SpaceError(f"kubeconfig {path}: user {ctx.get('user')!r} gets its credentials from a plugin, "
                         "which spacehooks does not run", hint="give it a service account token or a client "
                         "certificate (contrib/kubernetes/README.md shows how)")
    context = _ssl_context(path.parent, cluster, user)
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (path.parent / user["tokenFile"]).read_text().strip()
    return Api(cluster.get("server", ""), namespace, context=context, token=token)


def _ssl_context(base: Path, cluster: dict, user: dict) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        context.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    elif cluster.get("certificate-authority"):
        context.load_verify_locations(cafile=str(base / cluster["certificate-authority"]))
    cert, key = _pem(base, user, "client-certificate"), _pem(base, user, "client-key")
    if cert and key:
        # ssl loads a key pair only from files: a private folder, gone right after
        with tempfile.TemporaryDirectory(prefix="spacehooks-kube-") as folder:
            cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
            for file, data in ((cert_file, cert), (key_file, key)):
                fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            context.load_cert_chain(str(cert_file), str(key_file))
    return context


def _pem(base: Path, user: dict, field: str) -> bytes | None:
    if user.get(f"{field}-data"):
        return base64.b64decode(user[f"{field}-data"])
    if user.get(field):
        return (base / user[field]).read_bytes()
    return None
