import json
import os
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PODMAN_URL = os.environ.get("SPACEHOOKS_TEST_PODMAN_URL", "unix:///run/spacehooks/podman.sock")


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A spacehooks server layout in a temp folder: config file, home, repo root.

    Returns a namespace; `server.configure(**settings)` rewrites the config file.
    """
    class Server:
        root = tmp_path / "git"
        home = tmp_path / "home"
        config = tmp_path / "etc" / "config.yaml"
        values = {"repo_root": str(tmp_path / "git"), "podman_url": PODMAN_URL}

        def configure(self, **kw):
            self.values.update(kw)
            self.config.parent.mkdir(parents=True, exist_ok=True)
            self.config.write_text(yaml.safe_dump(self.values))

        def env(self):
            return {"SPACEHOOKS_CONFIG": str(self.config), "SPACEHOOKS_HOME": str(self.home),
                    "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}

    s = Server()
    s.values = dict(s.values)
    s.root.mkdir()
    s.home.mkdir()
    s.configure()
    for key, value in s.env().items():
        monkeypatch.setenv(key, value)
    return s


def _ping(url: str) -> str:
    import socket
    path = url.removeprefix("unix://")
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(path)
    sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
    data = sock.recv(4096)
    sock.close()
    return data.decode(errors="replace")


@pytest.fixture(scope="session")
def podman_url():
    """The Podman service .ci/run starts. Missing is a failure, never a skip."""
    try:
        answer = _ping(PODMAN_URL)
    except OSError as exc:
        pytest.fail(f"Podman service not reachable at {PODMAN_URL} ({exc}); "
                    f"start it with contrib/podman/start-service.sh")
    if "OK" not in answer:
        pytest.fail(f"Podman service at {PODMAN_URL} answered {answer!r}")
    return PODMAN_URL
