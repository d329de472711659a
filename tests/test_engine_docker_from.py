"""docker Spaces' `FROM python:3.x` (issue 16, item 3): through admin aliases to a local
python-compatible image on a server that reaches no registry (this one), through a registry
(Debian's docker-registry acting as the Docker Hub mirror of a Podman service of the test's
own), and a failed pull said with the image and the setting. Real pushes, real Podman."""
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

import servers
from conftest import PODMAN_URL, REPO, VENV_BIN
from helpers import push

COMPAT = "localhost/spacehooks/python-compat:3.11"
ALIASES = {"python:3.*": COMPAT}
DOCKER_README = "---\ntitle: From python\nsdk: docker\napp_port: 7860\nstartup_duration_timeout: 60s\n---\n"
# The Hub's own docker Space template (huggingface.co/docs/hub/spaces-sdks-docker), unchanged
HUB_TEMPLATE = """FROM python:3.9

RUN useradd -m -u 1000 user
USER user
ENV PATH="/home/user/.local/bin:$PATH"

WORKDIR /app

COPY --chown=user ./requirements.txt requirements.txt
RUN pip install --no-cache-dir --upgrade -r requirements.txt

COPY --chown=user . /app
CMD ["uvicorn", "app:app", "--host", "0.0.0.0", "--port", "7860"]
"""
FASTAPI_APP = """from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def greet_json():
    return {"Hello": "World!"}
"""


def get(port, path="/"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, response.read().decode()


def wait_running(engine, space_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        space = engine.space(space_id)
        if space["stage"] != "BUILDING" and space["stage"] != "APP_STARTING":
            return space
        time.sleep(0.5)
    return engine.space(space_id)


def build_log(engine, space_id, build_id=1):
    from spacehooks import follow
    return follow.build_log(engine.home, space_id, build_id).read_text()


@pytest.fixture(scope="session")
def compat_image(podman_url, tmp_path_factory):
    """localhost/spacehooks/python-compat:3.11, made by `spacehooks base-image build --compat 3.11`."""
    config = tmp_path_factory.mktemp("compat") / "config.yaml"
    config.write_text(yaml.safe_dump({"podman_url": podman_url}))
    result = subprocess.run([str(VENV_BIN / "spacehooks"), "base-image", "build", "--compat", "3.11"],
                            env={**os.environ, "SPACEHOOKS_CONFIG": str(config)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert result.returncode == 0, result.stdout
    assert f'"python:3.11*": {COMPAT}' in result.stdout, result.stdout
    return COMPAT


def with_aliases(engine, aliases):
    engine.configure(build={**engine.values["build"], "image_aliases": aliases})
    from spacehooks import config
    engine.settings = config.load()


def test_the_compat_image_is_what_python_images_promise(compat_image, podman_url):
    """python and pip on PATH, pip allowed (no externally-managed refusal), useradd there and
    uid 1000 free, root in /."""
    script = ("set -e; for t in python python3 pip pip3 useradd; do printf '%s ' $(command -v $t); done; echo; id -u; pwd; "
              "! getent passwd 1000; test ! -e /home/user; ls /usr/lib/python3*/EXTERNALLY-MANAGED 2>/dev/null || "
              "echo not-managed; /usr/local/bin/python -c 'import sys; print(sys.version_info[:2])'")
    seen = subprocess.run(["podman", "--url", podman_url, "run", "--rm", "--network", "none", compat_image, "sh", "-c", script],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert seen.returncode == 0, seen.stdout
    lines = seen.stdout.splitlines()
    assert lines[0].split() == ["/opt/venv/bin/python", "/opt/venv/bin/python3", "/opt/venv/bin/pip",
                                "/opt/venv/bin/pip3", "/usr/sbin/useradd"], seen.stdout
    assert lines[1:] == ["0", "/", "not-managed", "(3, 11)"], seen.stdout


def test_the_hubs_docker_template_builds_unchanged_through_an_alias(engine, compat_image):
    with_aliases(engine, ALIASES)
    files = {"README.md": DOCKER_README, "Dockerfile": HUB_TEMPLATE, "app.py": FASTAPI_APP,
             "requirements.txt": "fastapi\nuvicorn[standard]\n"}
    bare, work = engine.create("alice/template", files)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    space = wait_running(engine, "alice/template")
    log = build_log(engine, "alice/template")
    assert space["stage"] == "RUNNING", (space["error"], log[-3000:])
    assert f"Image line 1: python:3.9 -> {COMPAT} (build.image_aliases 'python:3.*')" in log
    assert get(space["port"]) == (200, json.dumps({"Hello": "World!"}, separators=(",", ":")))


def test_a_from_no_registry_serves_names_the_image_and_the_setting(engine):
    """This machine reaches no registry: without an alias the pull fails, and the stage, the
    build log (what the push shows) and the 503 page say which image and which setting."""
    from spacehooks.gateway import pages
    dockerfile = "FROM python:3.10\nRUN true\nCMD [\"python\", \"-m\", \"http.server\", \"7860\"]\n"
    bare, work = engine.create("alice/nofrom", {"README.md": DOCKER_README, "Dockerfile": dockerfile})
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    space = engine.space("alice/nofrom")
    assert space["stage"] == "BUILD_ERROR"
    prefix = ("build #1 failed: image python:3.10 (Dockerfile line 1) could not be pulled as "
              "docker.io/library/python:3.10 (")
    suffix = ('); a server that reaches no registry maps it to a local image with build.image_aliases, e.g. '
              '"python:3.*": localhost/spacehooks/python-compat:3.11 (made by `spacehooks base-image build --compat 3.11`)')
    assert space["error"].startswith(prefix) and space["error"].endswith(suffix), space["error"]
    assert "registry-1.docker.io" in space["error"]  # Podman's own words in between
    log = build_log(engine, "alice/nofrom")
    assert "Image line 1: python:3.10 -> docker.io/library/python:3.10" in log
    assert f"BUILD_ERROR: {space['error'].removeprefix('build #1 failed: ')}" in log
    page = pages.space_status(engine.settings, space, "failed")
    assert page.status == 503 and "could not be pulled as docker.io/library/python:3.10" in page.text
    assert "build.image_aliases" in page.text

    # an alias to an image the server lacks names the alias; COPY --from is checked the same way
    with_aliases(engine, {"python:3.1*": "localhost/spacehooks/python-compat:3.99"})
    (work / "Dockerfile").write_text("FROM localhost/spacehooks/python:3.11\nCOPY --from=python:3.12-slim /etc/hostname /x\n")
    subprocess.run(["git", "commit", "-qam", "copy from"], cwd=work, check=True)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    error = engine.space("alice/nofrom")["error"]
    assert error.startswith("build #2 failed: image python:3.12-slim (Dockerfile line 2) is build.image_aliases "
                            "'python:3.1*' -> localhost/spacehooks/python-compat:3.99, which this server does not "
                            "have ("), error
    assert error.endswith("); the admin builds it (`spacehooks base-image build --compat X.Y` makes "
                          "localhost/spacehooks/python-compat:X.Y) or changes build.image_aliases"), error


class Registry:
    """Debian's docker-registry on a free port, with its own storage folder."""

    def __init__(self, base: Path):
        self.port = servers.free_port()
        self.storage = base / "storage"
        self.conf = base / "registry.yml"
        self.log = base / "registry.log"
        self.conf.write_text(yaml.safe_dump({
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": os.urandom(8).hex()}}))
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.conf)], stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        servers.wait_port(self.port, self.proc, self.log)
        time.sleep(0.3)  # a port someone else took meanwhile: ours exits (bind fails)
        assert self.proc.poll() is None, self.log.read_text()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def own_service(base: Path, registries_conf: Path) -> tuple[str, callable]:
    """A second Podman service (same storage, the repo's containers.conf) on its own socket,
    reading registries_conf: the shared service's configuration stays as it is."""
    sock = Path("/run/spacehooks") / f"c16-mirror-{os.getpid()}.sock"
    env = {**os.environ, "SPACEHOOKS_PODMAN_CONF_DIR": str(base / "podman-conf"),
           "SPACEHOOKS_PODMAN_LOG": str(base / "podman.log"), "CONTAINERS_REGISTRIES_CONF": str(registries_conf)}
    subprocess.run([str(REPO / "contrib" / "podman" / "start-service.sh"), str(sock)], env=env, check=True,
                   stdout=subprocess.DEVNULL)

    def stop():
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and f"unix://{sock}".encode() in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), 15)
            except OSError:
                continue
        sock.unlink(missing_ok=True)
    return f"unix://{sock}", stop


def test_from_a_registry_short_name_pulls_docker_hub_through_its_mirror(engine, tmp_path):
    """The registry path: `FROM python:3.11-slim` is docker.io/library/python:3.11-slim, found on
    the Docker Hub mirror the service's registries.conf names (docker-registry holding the
    base image under that name), and the Space runs."""
    hub_name = "docker.io/library/python:3.11-slim"
    assert subprocess.run(["podman", "--url", PODMAN_URL, "image", "exists", hub_name]).returncode != 0, \
        f"{hub_name} is in local storage already: the test could not tell a pull from it"
    registry = Registry(tmp_path)
    mirror = f"127.0.0.1:{registry.port}"
    conf = tmp_path / "registries.conf"
    conf.write_text('[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
                    f'[[registry.mirror]]\nlocation = "{mirror}"\ninsecure = true\n')
    url, stop = own_service(tmp_path, conf)
    from spacehooks import config
    # the base image's files under an image of the test's own (a label apart): pulling the base
    # image itself back would give the shared image another manifest (a zstd one breaks
    # `podman save` of it for everyone)
    probe = f"localhost/spacehooks-test/mirror-probe:{os.getpid()}"
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "Containerfile").write_text(f"FROM localhost/spacehooks/python:3.11\nLABEL c16.mirror-test={os.getpid()}\n")
    try:
        for step in (["build", "--pull=never", "-t", probe, str(tmp_path / "probe")],
                     ["push", "--tls-verify=false", probe, f"{mirror}/library/python:3.11-slim"], ["rmi", probe]):
            done = subprocess.run(["podman", "--url", url, *step], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert done.returncode == 0, done.stdout
        engine.configure(podman_url=url)
        engine.settings = config.load()
        dockerfile = ("FROM python:3.11-slim\nRUN python3 -c \"print('built on the mirror')\"\n"
                      "WORKDIR /home/user/app\nCOPY index.html .\nCMD [\"python\", \"-m\", \"http.server\", \"7860\"]\n")
        bare, work = engine.create("alice/mirror", {"README.md": DOCKER_README, "Dockerfile": dockerfile,
                                                    "index.html": "from the mirror\n"})
        assert push(work, str(bare)).returncode == 0
        assert engine.drain() == 1
        space = wait_running(engine, "alice/mirror")
        log = build_log(engine, "alice/mirror")
        assert space["stage"] == "RUNNING", (space["error"], log[-3000:])
        assert f"Image line 1: python:3.11-slim -> {hub_name}" in log
        assert "built on the mirror" in log
        assert get(space["port"], "/index.html") == (200, "from the mirror\n")
        # the pull went to the mirror: the registry's storage served that repository
        assert (registry.storage / "docker" / "registry" / "v2" / "repositories" / "library" / "python").is_dir()
    finally:
        # the names this test gave images (the Space's container is the engine fixture's to remove;
        # the pulled image stays as its Space image's parent, untagged)
        for name in (hub_name, probe):
            subprocess.run(["podman", "--url", PODMAN_URL, "untag", name, name], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        engine.configure(podman_url=PODMAN_URL)  # the engine fixture removes the Space's container there
        engine.settings = config.load()
        stop()
        registry.stop()
