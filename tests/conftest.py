import json
import os
import sys
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
        # push_log_seconds 0: a push does not wait for a build worker that gate tests never run
        values = {"repo_root": str(tmp_path / "git"), "podman_url": PODMAN_URL,
                  "build": {"push_log_seconds": 0}}

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
    yield s
    _remove_fence(s)


def _remove_fence(server) -> None:
    """The nftables table and Space networks this server's worker or runner made, if any."""
    import subprocess
    from spacehooks import config, netfence
    # a test may have left a broken file behind on purpose, or pointed it at a Podman service
    # of its own that is gone now (networks live in the storage that service shared)
    server.configure(podman_url=PODMAN_URL)
    settings = config.load(path=server.config, home=server.home)
    table = ["nft", "list", "table", "inet", netfence.table(settings)]
    if subprocess.run(table, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
        netfence.remove_all(settings)  # its networks exist only once the table was loaded


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


# --- engine (build and run) fixtures ----------------------------------------------------

ENGINE_BASE = "localhost/spacehooks/python:3.11"


@pytest.fixture(scope="session")
def engine_base_image(podman_url, tmp_path_factory):
    """The 3.11 base image, made by `spacehooks base-image build` when missing or stale."""
    from spacehooks import baseimage, config
    home = tmp_path_factory.mktemp("base-home")
    settings = config.load(path=home / "none.yaml", home=home)
    baseimage.build(settings, ["3.11"], False, print)
    return ENGINE_BASE


@pytest.fixture
def engine(server, engine_base_image, podman_url):
    """A server ready to build and run Spaces, removing every container it started afterwards."""
    from spacehooks import config, state
    server.configure(**{
        "python_versions": {"3.11": engine_base_image},
        # a build that hangs fails the test within minutes, not the default hour
        "build": {"ca_bundle": "/etc/ssl/certs/ca-certificates.crt", "push_log_seconds": 0, "timeout_seconds": 600},
        "run": {"grace_seconds": 1, "memory_mb": 1024, "cpus": 1, "pids": 256},
        "hardware": {"cpu-basic": {"cpus": 1, "memory_mb": 1024}},
    })
    server.settings = config.load()
    server.create = lambda space_id, files: _engine_create(server, space_id, files)
    server.drain = lambda: _engine_drain(server)
    server.space = lambda space_id: _engine_space(server, space_id)
    yield server
    from spacehooks import engine as engine_mod
    eng = engine_mod.get(server.settings)
    st = state.open(server.settings)
    ours = {s["id"] for s in st.list_spaces()}
    st.close()
    for container in eng.containers("spacehooks.space"):
        if container.labels.get("spacehooks.space") in ours:
            eng.remove(container.name, stop_timeout=0)


def _engine_create(server, space_id, files):
    """A bare repo with the hooks installed and a work repo holding files (not pushed yet)."""
    import subprocess
    from helpers import bare_repo, work_repo
    bare = bare_repo(server.root, space_id)
    subprocess.run([sys.executable, "-m", "spacehooks", "install", str(bare)], check=True,
                   stdout=subprocess.DEVNULL)
    work = work_repo(server.root.parent / "work" / space_id, files)
    return bare, work


def _engine_drain(server):
    """Run the worker until the queue is empty; returns how many builds it processed."""
    from spacehooks import worker
    count = 0
    while worker.Worker(server.settings).run_once():
        count += 1
    return count


def _engine_space(server, space_id):
    from spacehooks import state
    st = state.open(server.settings)
    try:
        return st.get_space(space_id)
    finally:
        st.close()


# --- gpu fixtures -----------------------------------------------------------------------

GPU_TEST_IMAGE = "localhost/spacehooks-test/busybox:gpu"


@pytest.fixture(scope="session")
def busybox_image(podman_url, tmp_path_factory):
    """A tiny image made here from Debian's static busybox: sh, httpd, and /tmp for uid 1000.

    Its default command serves, on port 7860, what the script in $APP_SCRIPT printed."""
    import subprocess
    import tarfile
    if subprocess.run(["podman", "image", "exists", GPU_TEST_IMAGE]).returncode == 0:
        return GPU_TEST_IMAGE
    work = tmp_path_factory.mktemp("busybox")
    download = ["apt-get", "download", "busybox-static"]
    if subprocess.run(download, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(download, cwd=work, check=True, stdout=subprocess.DEVNULL)
    deb = next(work.glob("busybox-static_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
    rootfs = work / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        for folder, mode in (("bin", 0o755), ("tmp", 0o1777), ("dev", 0o755), ("proc", 0o755),
                             ("sys", 0o755), ("etc", 0o755)):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(work / "x" / "bin" / "busybox"), arcname="bin/busybox")
        for applet in ("sh", "cat", "ls", "env", "httpd", "mkdir", "sleep", "echo", "test"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    # the default command is a web app showing what $APP_SCRIPT printed at start
    app = ('mkdir -p /tmp/www && /bin/sh -c "$APP_SCRIPT" > /tmp/www/index.html 2>&1; '
           'exec httpd -f -p 7860 -h /tmp/www')
    subprocess.run(["podman", "import", "--change", "ENV PATH=/bin",
                    "--change", "CMD " + json.dumps(["/bin/sh", "-c", app]),
                    str(rootfs), GPU_TEST_IMAGE], check=True, stdout=subprocess.DEVNULL)
    return GPU_TEST_IMAGE


@pytest.fixture(scope="session")
def base_image(podman_url, tmp_path_factory):
    """The python 3.11 base image, built at most once per run (or loaded from the cache
    .ci/prepare-podman.sh filled; a no-op when CI already made it). Returns its reference."""
    import subprocess
    config = tmp_path_factory.mktemp("base-image") / "config.yaml"
    config.write_text(yaml.safe_dump({"podman_url": podman_url}))
    env = {**os.environ, "SPACEHOOKS_CONFIG": str(config)}
    result = subprocess.run([str(VENV_BIN / "spacehooks"), "base-image", "build", "--python", "3.11"],
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        pytest.fail(f"base image build failed:\n{result.stdout}")
    return "localhost/spacehooks/python:3.11"
