"""Restore after a restart of `spacehooks serve`, a reboot (stopped containers), a wiped image
store, and a restart of the Podman service. Real serve processes, real pushes, real Podman."""
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import git, push, write_files

DOCKER_README = "---\ntitle: Restore\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 30s\n---\n"
DOCKERFILE = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\nCOPY --chown=1000:1000 . .\n"
              'CMD ["python", "-m", "http.server", "8000"]\n')
REPO = Path(__file__).resolve().parents[1]


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def podman(*args):
    return subprocess.run(["podman", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class Serve:
    """`spacehooks serve` as a child process on its own port, logging to a file."""

    def __init__(self, engine):
        self.engine = engine
        self.port = free_port()
        engine.configure(gateway={"listen": f"127.0.0.1:{self.port}", "sleep_check_seconds": 3600})
        self.log = engine.home.parent / "serve.log"
        self.proc = None

    def start(self):
        with self.log.open("a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "spacehooks", "serve"], stdout=log,
                                         stderr=subprocess.STDOUT, env=os.environ.copy())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2).close()
                return self
            except urllib.error.HTTPError:
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"serve did not listen:\n{self.log.read_text()}")

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)

    def get(self, space_id):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/v.txt",
                                         headers={"Host": space_id.replace("/", "-") + ".localhost"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def wait_for(self, predicate, what, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.3)
        raise AssertionError(f"{what} after {timeout}s:\n{self.log.read_text()[-4000:]}")


@pytest.fixture
def serve(engine):
    s = Serve(engine)
    yield s
    s.kill(signal.SIGTERM)


def deployed(engine, space_id, build_id):
    space = engine.space(space_id)
    return space is not None and space["build_id"] == build_id and space["stage"] == "RUNNING"


def new_version(work, text):
    write_files(work, {"v.txt": text})
    git("commit", "-qam", text.strip(), cwd=work)


def test_restart_reboot_and_queued_build(engine, serve):
    from spacehooks.admin import spaces as admin
    serve.start()
    bare, work = engine.create("restore/web", {"README.md": DOCKER_README, "Dockerfile": DOCKERFILE, "v.txt": "one\n"})
    bare2, work2 = engine.create("restore/paused", {"README.md": DOCKER_README, "Dockerfile": DOCKERFILE, "v.txt": "p\n"})
    assert push(work, str(bare)).returncode == 0
    assert push(work2, str(bare2)).returncode == 0
    serve.wait_for(lambda: deployed(engine, "restore/web", 1) and deployed(engine, "restore/paused", 2), "not deployed")
    serve.wait_for(lambda: serve.get("restore/web") == (200, "one\n"), "the gateway does not serve build #1", 10)
    admin.pause(engine.settings, "restore/paused")

    # (a) serve dies and comes back: the container never stopped, nothing is started again
    serve.kill()
    first = engine.space("restore/web")
    serve.start()
    assert serve.get("restore/web") == (200, "one\n")
    assert engine.space("restore/web")["container"] == first["container"]

    # (c) a reboot stops every container; a push while serve is down waits in the queue
    serve.kill()
    assert podman("stop", "-t", "2", first["container"]).returncode == 0
    new_version(work, "two\n")
    result = push(work, str(bare))
    assert result.returncode == 0 and "Build #3 queued for restore/web" in result.stdout, result.stdout
    assert engine.space("restore/web")["stage"] == "RUNNING_BUILDING"
    serve.start()
    # the stopped container runs again first (same port), then the queued build deploys
    serve.wait_for(lambda: f"restore restore/web: container {first['container']} started again" in serve.log.read_text(),
                   "the stopped container was not started again", timeout=60)
    serve.wait_for(lambda: deployed(engine, "restore/web", 3), "build #3 not deployed")
    serve.wait_for(lambda: serve.get("restore/web") == (200, "two\n"), "the gateway does not serve build #3", 10)
    paused = engine.space("restore/paused")
    assert (paused["stage"], paused["container"]) == ("PAUSED", None)
    assert podman("ps", "-q", "--filter", "label=spacehooks.space=restore/paused").stdout == ""
    assert serve.get("restore/paused")[0] != 200


def test_removed_container_and_wiped_image_store(engine, serve):
    serve.start()
    bare, work = engine.create("restore/wiped", {"README.md": DOCKER_README, "Dockerfile": DOCKERFILE, "v.txt": "w\n"})
    assert push(work, str(bare)).returncode == 0
    serve.wait_for(lambda: deployed(engine, "restore/wiped", 1), "not deployed")
    # the container is gone but the image is there: a new container from the same image
    serve.kill()
    space = engine.space("restore/wiped")
    assert podman("rm", "-f", space["container"]).returncode == 0
    serve.start()
    serve.wait_for(lambda: f"restore restore/wiped: started again from {space['image']}" in serve.log.read_text(),
                   "not started from its image", timeout=60)
    again = engine.space("restore/wiped")
    assert (again["stage"], again["build_id"]) == ("RUNNING", 1) and again["container"] != space["container"]
    serve.wait_for(lambda: serve.get("restore/wiped") == (200, "w\n"), "the gateway does not serve it", 10)
    # Podman's storage wiped: the deployed commit is built again
    serve.kill()
    space = again
    assert podman("rm", "-f", space["container"]).returncode == 0
    assert podman("rmi", space["image"]).returncode == 0
    serve.start()
    serve.wait_for(lambda: deployed(engine, "restore/wiped", 2), "not rebuilt")
    serve.wait_for(lambda: serve.get("restore/wiped") == (200, "w\n"), "the gateway does not serve build #2", 10)
    from spacehooks import state
    st = state.open(engine.settings)
    build = st.get_build(2)
    st.close()
    assert (build["pusher"], build["commit"], build["status"]) == ("restore", space["commit"], "succeeded")
    assert (f"restore restore/wiped: image {space['image']} is missing: build #2 queued") in serve.log.read_text()


def test_spaces_keep_answering_while_the_podman_service_restarts(engine, tmp_path):
    """A second Podman service (same storage) on its own socket, so other tests keep theirs."""
    sock = Path("/run/spacehooks") / f"restore-test-{os.getpid()}.sock"
    env = {**os.environ, "SPACEHOOKS_PODMAN_CONF_DIR": str(tmp_path / "podman-conf"),
           "SPACEHOOKS_PODMAN_LOG": str(tmp_path / "podman.log")}

    def start_service():
        subprocess.run([str(REPO / "contrib" / "podman" / "start-service.sh"), str(sock)], env=env, check=True,
                       stdout=subprocess.DEVNULL)

    def service_pid():
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and str(sock).encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
        return None

    start_service()
    engine.configure(podman_url=f"unix://{sock}")
    serve = Serve(engine)
    try:
        serve.start()
        bare, work = engine.create("restore/svc", {"README.md": DOCKER_README, "Dockerfile": DOCKERFILE, "v.txt": "s1\n"})
        assert push(work, str(bare)).returncode == 0
        serve.wait_for(lambda: deployed(engine, "restore/svc", 1), "not deployed")
        serve.wait_for(lambda: serve.get("restore/svc") == (200, "s1\n"), "the gateway does not serve build #1", 10)
        os.kill(service_pid(), signal.SIGTERM)
        serve.wait_for(lambda: service_pid() is None, "the Podman service did not stop", timeout=30)
        for _ in range(5):
            assert serve.get("restore/svc") == (200, "s1\n")
            time.sleep(0.2)
        start_service()
        new_version(work, "s2\n")
        assert push(work, str(bare)).returncode == 0
        serve.wait_for(lambda: deployed(engine, "restore/svc", 2), "no deploy after the service came back")
        serve.wait_for(lambda: serve.get("restore/svc") == (200, "s2\n"), "the gateway does not serve build #2", 10)
    finally:
        serve.kill(signal.SIGTERM)
        pid = service_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
        sock.unlink(missing_ok=True)
