"""An in-memory Kubernetes API server for the engine's unit tests: real HTTP on a loopback port,
every request recorded (method, path, query, content type, the body's very bytes), objects held
by path. It answers the calls the engine makes; Pods, Nodes and ReplicaSets are put in by tests
(no controllers run here)."""
from __future__ import annotations

import copy
import itertools
import json
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

from spacehooks import config
from spacehooks.engine.spec import RunSpec

NS = "spaces-test"
COLLECTIONS = {"deployments": "/apis/apps/v1", "replicasets": "/apis/apps/v1", "services": "/api/v1",
               "secrets": "/api/v1", "pods": "/api/v1", "networkpolicies": "/apis/networking.k8s.io/v1",
               "persistentvolumeclaims": "/api/v1"}


@dataclass
class Call:
    method: str
    path: str
    query: dict
    content_type: str
    body: bytes


def _selected(obj: dict, selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, sep, value = term.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _merge(target: dict, patch: dict) -> dict:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeApi:
    def __init__(self, *, tls: tuple | None = None, token: str | None = None, client_ca: str | None = None):
        self.token = token
        self.objects: dict[str, dict] = {}
        self.calls: list[Call] = []
        self.logs: dict[str, str] = {}  # pod name -> its log
        self.denied: set[str] = set()  # paths answered 403
        self._uid = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        if tls:  # (cert, key) for localhost; client_ca: client certificates are then required
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            if client_ca:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(client_ca)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # -- what tests put in and look at ----------------------------------------------------
    def put(self, path: str, obj: dict) -> dict:
        obj.setdefault("metadata", {}).setdefault("uid", f"uid-{next(self._uid)}")
        self.objects[path] = obj
        return obj

    def ns_path(self, plural: str, name: str = "") -> str:
        return f"{COLLECTIONS[plural]}/namespaces/{NS}/{plural}" + (f"/{name}" if name else "")

    def of_kind(self, plural: str) -> list[dict]:
        prefix = self.ns_path(plural) + "/"
        return [o for p, o in self.objects.items() if p.startswith(prefix) and p.count("/") == prefix.count("/")]

    def sent(self, method: str = "PATCH") -> list[Call]:
        return [c for c in self.calls if c.method == method]

    # -- HTTP ------------------------------------------------------------------------------
    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, obj) -> None:
                body = obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _status(self, code: int, message: str) -> None:
                self._answer(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "message": message, "code": code})

            def _handle(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with api._lock:
                    api.calls.append(Call(self.command, url.path, query, self.headers.get("Content-Type", ""), body))
                    if api.token and self.headers.get("Authorization") != f"Bearer {api.token}":
                        return self._status(401, "Unauthorized")
                    if url.path in api.denied:
                        return self._status(403, f"forbidden: {url.path}")
                    self._route(url.path, query, body)

            def _route(self, path: str, query: dict, body: bytes) -> None:
                if path == "/version":
                    return self._answer(200, {"gitVersion": "v1.30.0-fake"})
                if path.endswith("/log"):
                    pod = path.split("/")[-2]
                    text = api.logs.get(pod, "")
                    lines = int(query.get("tailLines", "0") or 0)
                    return self._answer(200, "".join(text.splitlines(True)[-lines:] if lines else text))
                if self.command == "GET" and (path in ("/api/v1/nodes", "/api/v1/pods") or path in
                                              {api.ns_path(p) for p in COLLECTIONS}):
                    plural = path.rsplit("/", 1)[-1]
                    items = [o for p, o in api.objects.items() if f"/{plural}/" in p
                             and _selected(o, query.get("labelSelector", ""))]
                    return self._answer(200, {"kind": "List", "items": items})
                obj = api.objects.get(path)
                if self.command == "GET":
                    return self._answer(200, obj) if obj else self._status(404, f"{path} not found")
                if self.command == "DELETE":
                    if obj is None:
                        return self._status(404, f"{path} not found")
                    del api.objects[path]
                    return self._answer(200, {"kind": "Status", "status": "Success"})
                if self.command == "PATCH":
                    ctype = self.headers.get("Content-Type", "")
                    patch = yaml.safe_load(body)
                    if ctype == "application/apply-patch+yaml":
                        if query.get("fieldManager") != "spacehooks":
                            return self._status(400, "fieldManager is required for apply")
                        if obj is not None:  # apply sets what the manifest holds; the rest stays
                            patch["metadata"].setdefault("uid", obj["metadata"].get("uid"))
                        return self._answer(200 if obj else 201, api.put(path, patch))
                    if obj is None:
                        return self._status(404, f"{path} not found")
                    return self._answer(200, _merge(obj, patch))
                self._status(405, f"{self.command} {path} is not served by the fake API")

            do_GET = do_DELETE = do_PATCH = do_POST = do_PUT = _handle

        return Handler


def settings(tmp_path, **values):
    """Settings with engine kubernetes and the given values (dotted keys nest)."""
    data: dict = {"engine": "kubernetes", "kubernetes": {"namespace": NS, "registry": "registry.test:5000/sp"}}
    for key, value in values.items():
        head, _, tail = key.partition(".")
        if tail:
            data.setdefault(head, {})[tail] = value
        else:
            data[head] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return config.load(path=path, home=tmp_path / "home")


def spec(space_id: str = "alice/demo", build: int = 1, **fields) -> RunSpec:
    base = dict(name=f"spacehooks-{space_id.replace('/', '-')}-{build}-1", image=f"localhost/spaces/{space_id}:{build}",
                space_id=space_id, labels={"spacehooks.space": space_id, "spacehooks.build": str(build)},
                env={"SPACE_ID": space_id, "GREETING": "hi"}, secrets={}, app_port=7860, host_port=0,
                network="sh-net", memory_mb=256, cpus=0.5, pids=128, nofile=1024, disk_mb=64, tmp_mb=32,
                log_bytes=1 << 20)
    base.update(fields)
    return RunSpec(**base)
