"""The Kubernetes engine for real, as far as this machine allows (no API server can run here):
an image built by the shared Podman service and pushed by the engine to a real registry
(Debian's docker-registry, started here on a free port); the engine's requests recorded by the
in-memory API server; and the very bytes it sent for the Deployment played by `podman kube play`
(Podman 4.3), which pulls the image back from the registry and runs the Space: it answers HTTP,
with the fences of the manifest in force. Podman 4.3 plays Deployment, Pod, ConfigMap and Secret
documents; Service and NetworkPolicy it refuses ("no supported kube kind"), and a Deployment that
takes a Secret crashes it, so the played Space has no secrets and its Secret is played alone.

Everything made here carries a unique prefix and is removed at the end; nothing else is touched.
"""
import json
import os
import socket
import subprocess
import tarfile
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from kube_support import NS, FakeApi, settings, spec
from spacehooks.engine import kubeapi, kubemanifests as km
from spacehooks.engine.kubernetes import KubernetesEngine
from spacehooks.errors import SpaceError

API = "/v4.0.0/libpod"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def podman(url: str, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"):
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(300)
    sock.connect(url.removeprefix("unix://"))
    import http.client
    conn = http.client.HTTPConnection("localhost")
    conn.sock = sock
    conn.request(method, path, body=body, headers={"Content-Type": ctype} if body is not None else {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


@pytest.fixture
def registry(tmp_path):
    """A real registry of our own: its config and storage in tmp_path, on a free loopback port."""
    port = free_port()
    (tmp_path / "registry").mkdir()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    log = open(tmp_path / "registry.log", "wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"docker-registry did not start: {(tmp_path / 'registry.log').read_text()}")
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture
def made(podman_url):
    """Names this test makes on the shared service, removed at the end (only these)."""
    things = {"images": [], "pods": [], "secrets": [], "plays": []}
    # kube play makes Podman's default kube network when it is missing: ours to remove then
    kube_network = f"{API}/networks/podman-default-kube-network"
    network_was_there = podman(podman_url, "GET", kube_network + "/json")[0] == 200
    yield things
    for body in things["plays"]:
        podman(podman_url, "DELETE", f"{API}/play/kube", body, "application/yaml")
    for pod in things["pods"]:
        podman(podman_url, "DELETE", f"{API}/pods/{pod}?force=true")
    for secret in things["secrets"]:
        podman(podman_url, "DELETE", f"{API}/secrets/{secret}")
    for image in reversed(things["images"]):
        podman(podman_url, "DELETE", f"{API}/images/{urllib.parse.quote(image, safe='')}?force=true")
    if not network_was_there:
        podman(podman_url, "DELETE", kube_network)  # refused while another pod uses it: then it stays


def tiny_base(tmp_path, podman_url, prefix: str) -> str:
    """A few-MB image: busybox (httpd, cp, sh) and the Space user's home, no registry needed."""
    root = tmp_path / "rootfs"
    for folder in ("bin", "etc", "tmp", "home/user/app"):
        (root / folder).mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(open("/bin/busybox", "rb").read())
    (root / "bin" / "busybox").chmod(0o755)
    for tool in ("sh", "cp", "httpd"):
        os.symlink("busybox", root / "bin" / tool)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(root, arcname=".")
    reference = f"localhost/{prefix}/busybox:base"
    status, body = podman(podman_url, "POST", f"{API}/images/import?" + urllib.parse.urlencode(
        {"reference": reference, "changes": "ENV PATH=/bin"}), tarball.read_bytes(), "application/x-tar")
    assert status == 200, body
    return reference


def kubeconfig(path, url: str):
    path.write_text(f"current-context: t\nclusters: [{{name: c, cluster: {{server: '{url}'}}}}]\n"
                    "users: [{name: u, user: {token: t}}]\ncontexts: [{name: t, context: {cluster: c, user: u}}]\n")
    return str(path)


def test_a_docker_space_built_by_the_builder_is_pushed_and_its_deployment_bytes_run_under_kube_play(
        tmp_path, server, podman_url, registry, made):
    """The worker's path with `engine: kubernetes`: builder.build (the Space's Dockerfile, build
    fence and all) -> the engine builds on Podman and pushes; runspec.spec -> engine.run sends
    the manifests; podman kube play runs the Deployment's bytes, pulling from the registry."""
    from helpers import git, work_repo
    from spacehooks import builder, config, engine as engine_pkg, runspec, state
    prefix = f"k12t{uuid.uuid4().hex[:8]}"
    port = free_port()
    made["images"].append(tiny_base(tmp_path, podman_url, prefix))
    api = FakeApi()
    try:
        server.configure(engine="kubernetes", kubernetes={
            "kubeconfig": kubeconfig(tmp_path / "kubeconfig", api.url), "namespace": NS,
            "registry": registry, "registry_tls_verify": False})
        settings_ = config.load(path=server.config, home=server.home)
        space_id = f"{prefix}/web"
        work = work_repo(tmp_path / "work", {
            "README.md": f"---\ntitle: web\nsdk: docker\napp_port: {port}\n---\n",
            "index.html": "hello from kube play\n",
            "Dockerfile": f"FROM {made['images'][0]}\nCOPY index.html /home/user/app/index.html\n"
                          f'CMD ["httpd", "-f", "-p", "{port}", "-h", "/home/user/app"]\n'})
        commit = git("rev-parse", "HEAD", cwd=work).stdout.strip()
        conf = {"sdk": "docker", "app_port": port}
        lines = []
        tag = builder.build(settings_, space_id, work, commit, 1, conf, secrets={}, no_cache=False,
                            write=lines.append, should_stop=lambda: False)
        made["images"].append(tag)
        pushed = f"{registry}/{tag.removeprefix('localhost/')}"
        assert f"Pushing {pushed}" in lines
        repo = tag.removeprefix("localhost/").rpartition(":")[0]
        tags = json.load(urllib.request.urlopen(f"http://{registry}/v2/{repo}/tags/list", timeout=10))
        assert tags == {"name": repo, "tags": [tag.rpartition(":")[2]]}
        made["images"].append(pushed)  # kube play pulls it back into the service's storage

        st = state.open(settings_)
        try:
            spec_ = runspec.spec(settings_, st, {"id": space_id, "repo_path": str(work)}, tag, conf, 1, 0)
        finally:
            st.close()
        eng = engine_pkg.get(settings_)
        assert isinstance(eng, KubernetesEngine)
        eng.run(spec_)
        (sent,) = [c.body for c in api.sent("PATCH") if c.path.endswith(f"/deployments/{km.object_name(space_id)}")]
    finally:
        api.close()

    deployment = json.loads(sent)
    pod_name = deployment["metadata"]["name"] + "-pod-0"
    made["plays"].append(sent)
    made["pods"].append(pod_name)
    status, body = podman(podman_url, "POST", f"{API}/play/kube?tlsVerify=false", sent, "application/yaml")
    assert status == 200, body
    deadline, answer = time.monotonic() + 60, None
    while answer is None:
        try:
            answer = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
        except OSError:
            assert time.monotonic() < deadline, "the played Space never answered HTTP"
            time.sleep(0.2)
    assert answer == b"hello from kube play\n"

    status, body = podman(podman_url, "GET", f"{API}/containers/{pod_name}-app/json")
    assert status == 200, body
    info = json.loads(body)
    host = info["HostConfig"]
    assert info["Config"]["User"] == "1000:1000"
    assert host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["CapAdd"] == [] and "CAP_NET_BIND_SERVICE" in host["CapDrop"] and "CAP_CHOWN" in host["CapDrop"]
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert (host["Memory"], host["CpuQuota"]) == (int(limits["memory"].removesuffix("Mi")) << 20,
                                                  int(limits["cpu"].removesuffix("m")) * 100)
    assert info["Config"]["Image"] == pushed  # pulled from the registry, not the local build
    # home is the emptyDir the init container filled from the image: the app's file is there
    assert {m["Destination"] for m in info["Mounts"]} >= {"/home/user", "/tmp", "/dev/shm"}


def test_the_engines_secret_bytes_play_as_podman_secrets(tmp_path, podman_url, made):
    prefix = f"k12t{uuid.uuid4().hex[:8]}"
    api = FakeApi()
    try:
        eng = KubernetesEngine(settings(tmp_path, podman_url=podman_url), kubeapi.Api(api.url, NS))
        eng.run(spec(f"{prefix}/web", secrets={"HF_TOKEN": "hf_value"}))
        (sent,) = [c.body for c in api.sent("PATCH") if "/secrets/" in c.path]
    finally:
        api.close()
    name = km.object_name(f"{prefix}/web")
    made["secrets"].append(name)
    status, body = podman(podman_url, "POST", f"{API}/play/kube", sent, "application/yaml")
    assert status == 200, body
    status, body = podman(podman_url, "GET", f"{API}/secrets/{name}/json")
    assert status == 200 and json.loads(body)["Spec"]["Name"] == name


def test_a_push_the_registry_refuses_fails_with_its_words_and_tls_is_verified_unless_told(
        tmp_path, podman_url, registry, made):
    prefix = f"k12t{uuid.uuid4().hex[:8]}"
    image = tiny_base(tmp_path, podman_url, prefix)
    made["images"].append(image)
    closed = free_port()
    for registry_name, verify, expected in (
            (f"127.0.0.1:{closed}", False, f"dial tcp 127.0.0.1:{closed}: connect: connection refused"),
            # the test registry speaks plain HTTP: with verification on, the push must fail
            (registry, True, "http: server gave HTTP response to HTTPS client")):
        conf = settings(tmp_path, podman_url=podman_url, **{
            "kubernetes.registry": registry_name, "kubernetes.registry_tls_verify": verify})
        eng = KubernetesEngine(conf, kubeapi.Api("http://127.0.0.1:1", NS))
        with pytest.raises(SpaceError) as caught:
            eng.push(image)
        assert caught.value.message.startswith(
            f"pushing the image to {registry_name}/{prefix}/busybox:base failed: "), caught.value.message
        assert expected in caught.value.message
        assert caught.value.hint.startswith("check `kubernetes.registry`")
    assert urllib.request.urlopen(f"http://{registry}/v2/_catalog", timeout=10).read() == b'{"repositories":[]}\n'
