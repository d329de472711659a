"""How the engine reaches a cluster: a kubeconfig (CA, token or client certificate, inline or as
files) over real TLS to the in-memory API server, and the errors a broken one gives."""
import base64
import subprocess

import pytest
import yaml

from kube_support import NS, FakeApi
from spacehooks.engine import kubeapi
from spacehooks.errors import SpaceError


def certificate(folder, name: str):
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
    return cert, key


def kubeconfig(path, server: str, cluster: dict, user: dict, context: str = "test"):
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_a_token_and_an_inline_ca_over_tls(tmp_path):
    cert, key = certificate(tmp_path, "localhost")
    api = FakeApi(tls=(cert, key), token="s3cret")
    try:
        config = kubeconfig(tmp_path / "config", api.url, {"certificate-authority-data": b64(cert)},
                            {"token": "s3cret"})
        client = kubeapi.from_kubeconfig(config, "", NS)
        assert client.request("GET", "/version")["gitVersion"] == "v1.30.0-fake"
        wrong = kubeapi.from_kubeconfig(kubeconfig(tmp_path / "wrong", api.url, {"certificate-authority-data":
                                                                                 b64(cert)}, {"token": "nope"}), "", NS)
        with pytest.raises(SpaceError) as caught:
            wrong.request("GET", "/version")
        assert caught.value.message == "Kubernetes API GET /version: 401 Unauthorized"
        assert caught.value.hint == "the kubeconfig's credentials were refused: renew the token or certificate"
        # a server whose certificate the kubeconfig's CA did not sign is not talked to
        other, _ = certificate(tmp_path, "other")
        untrusted = kubeapi.from_kubeconfig(kubeconfig(tmp_path / "untrusted", api.url, {
            "certificate-authority": str(other)}, {"token": "s3cret"}), "", NS)
        with pytest.raises(SpaceError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.request("GET", "/version")
    finally:
        api.close()


def test_a_client_certificate_from_files_relative_to_the_kubeconfig(tmp_path):
    cert, key = certificate(tmp_path, "localhost")
    client_cert, client_key = certificate(tmp_path, "spacehooks")
    api = FakeApi(tls=(cert, key), client_ca=str(client_cert))
    try:
        config = kubeconfig(tmp_path / "config", api.url, {"certificate-authority": "localhost.crt"},
                            {"client-certificate": "spacehooks.crt", "client-key-data": b64(client_key)})
        assert kubeapi.from_kubeconfig(config, "", NS).request("GET", "/version")["gitVersion"]
        no_cert = kubeapi.from_kubeconfig(kubeconfig(tmp_path / "nocert", api.url,
                                                     {"certificate-authority": "localhost.crt"}, {}), "", NS)
        with pytest.raises(SpaceError, match="^cannot reach the Kubernetes API at https://localhost:"):
            no_cert.request("GET", "/version")
    finally:
        api.close()


def test_a_kubeconfig_spacehooks_cannot_use_says_why(tmp_path):
    plugin = kubeconfig(tmp_path / "plugin", "https://k.example:6443", {}, {"exec": {"command": "aws"}})
    with pytest.raises(SpaceError) as caught:
        kubeapi.from_kubeconfig(plugin, "", NS)
    assert caught.value.message == (f"kubeconfig {plugin}: user 'u' gets its credentials from a plugin, "
                                    "which spacehooks does not run")
    with pytest.raises(SpaceError) as caught:
        kubeapi.from_kubeconfig(plugin, "elsewhere", NS)
    assert caught.value.message == f"kubeconfig {plugin}: no context named 'elsewhere'"
    bad = kubeconfig(tmp_path / "bad", "ftp://k.example", {}, {"token": "x"})
    with pytest.raises(SpaceError) as caught:
        kubeapi.from_kubeconfig(bad, "", NS)
    assert caught.value.message == "Kubernetes API server 'ftp://k.example' is not an http(s) URL"


def test_in_a_pod_the_service_account_token_and_ca_are_used(tmp_path, monkeypatch):
    from kube_support import settings
    cert, key = certificate(tmp_path, "localhost")
    api = FakeApi(tls=(cert, key), token="pod-token")
    try:
        account = tmp_path / "serviceaccount"
        account.mkdir()
        (account / "token").write_text("pod-token\n")
        (account / "ca.crt").write_bytes(cert.read_bytes())
        monkeypatch.setattr(kubeapi, "IN_CLUSTER", account)
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "localhost")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.server.server_port))
        monkeypatch.delenv("KUBECONFIG", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
        client = kubeapi.connect(settings(tmp_path))
        assert client.request("GET", "/version")["gitVersion"] == "v1.30.0-fake"
        assert client.namespace == NS
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
        with pytest.raises(SpaceError) as caught:
            kubeapi.connect(settings(tmp_path))
        assert caught.value.message == "engine kubernetes: no kubeconfig and not running in a cluster"
    finally:
        api.close()
