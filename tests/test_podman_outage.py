"""Podman outages: a build cut off because the service went away is queued again, not the Space's
failure; log copying and the worker back off (no traceback per container per pass); `status` and
`doctor` say the service is down. A Podman service of this test's own (the repo's
contrib/podman/containers.conf, another socket) is killed mid-build and started again; the shared
service is never touched (issue 11, item 7)."""
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from helpers import git, push
from spacehooks import config, state
from spacehooks.run import worker

REPO = Path(__file__).resolve().parents[1]
README = "---\ntitle: Outage\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 60s\n---\n"
SERVE = 'CMD ["python", "-m", "http.server", "8000"]\n'


class OwnPodman:
    def __init__(self, folder: Path):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nofile = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
        self.conf = folder / "containers.conf"
        self.conf.write_text((REPO / "contrib/podman/containers.conf").read_text()
                             .replace("nofile=4096:4096", f"nofile={nofile}:{nofile}"))
        self.sock = folder / "podman.sock"
        self.url = f"unix://{self.sock}"
        self.log = folder / "podman.log"
        self.proc = None

    def start(self):
        self.sock.unlink(missing_ok=True)
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(["podman", "system", "service", "--time=0", self.url], stdout=log,
                                         stderr=subprocess.STDOUT, env={**os.environ, "CONTAINERS_CONF": str(self.conf)},
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if subprocess.run(["curl", "-sf", "--unix-socket", str(self.sock), "http://d/_ping"],
                              stdout=subprocess.DEVNULL).returncode == 0:
                return
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.2)
        pytest.fail(f"own podman service did not answer:\n{self.log.read_text()}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # the service process we started, by its id
            self.proc.wait(30)


@pytest.fixture
def own_podman(tmp_path_factory):
    service = OwnPodman(tmp_path_factory.mktemp("own-podman"))
    service.start()
    yield service
    service.kill()  # the engine fixture's clean-up ran before: it needed the service up


def cli(*args):
    return subprocess.run([sys.executable, "-m", "spacehooks", *args], text=True, timeout=120,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"not within {seconds}s: {what}")


def test_a_build_cut_off_by_a_podman_outage_is_queued_again(own_podman, engine, caplog):
    engine.configure(podman_url=own_podman.url)
    engine.settings = config.load()
    settings = engine.settings
    bare, work = engine.create("alice/outage", {"README.md": README,
                                                "Dockerfile": "FROM localhost/spacehooks/python:3.11\n" + SERVE})
    assert push(work, str(bare)).returncode == 0
    stop = threading.Event()
    loop = threading.Thread(target=worker.Worker(settings).run, args=(stop,), kwargs={"restore": False}, daemon=True)
    with caplog.at_level(logging.INFO, logger="spacehooks"):
        loop.start()
        try:
            first = wait(lambda: (s := engine.space("alice/outage")) and s["stage"] == "RUNNING" and s, 300,
                         "first version running")
            # a slow second version: its RUN step is cut off by the outage
            (work / "Dockerfile").write_text(f"FROM localhost/spacehooks/python:3.11\nRUN echo {uuid.uuid4().hex} "
                                             f"&& sleep 20\n" + SERVE)
            git("commit", "-qam", "slow", cwd=work)
            second = git("rev-parse", "HEAD", cwd=work).stdout.strip()
            assert push(work, str(bare)).returncode == 0
            st = state.open(settings)
            build_id = st.builds("alice/outage", limit=1)[0]["id"]
            log_path = st.build_log_path("alice/outage", build_id)
            st.close()
            wait(lambda: log_path.exists() and "sleep 20" in log_path.read_text(), 120, "the slow step started")
            caplog.clear()
            own_podman.kill()
            outage_started = time.monotonic()

            def requeued():
                st = state.open(settings)
                try:
                    build = st.get_build(build_id)
                finally:
                    st.close()
                return build["status"] == "queued" and build["attempts"] == 1 and build
            build = wait(requeued, 60, "the build queued again")
            assert build["error"].startswith("queued again: the Podman service went away during the build")
            space = engine.space("alice/outage")
            assert space["stage"] == "RUNNING_BUILDING" and space["commit"] == first["commit"]
            # the old version still serves: its container does not need the service
            assert urllib.request.urlopen(f"http://127.0.0.1:{space['port']}/", timeout=10).status == 200
            status = cli("status", "alice/outage").stdout
            assert (f"podman:    DOWN: not reachable at {own_podman.url}; builds wait in the queue, app output is "
                    "not copied, `spacehooks doctor` says more") in status
            assert f"build #{build_id}: queued {second[:12]}" in status
            doctor = cli("doctor")
            assert doctor.returncode == 1
            assert f"PROBLEM  Podman service is down: Podman service not reachable at {own_podman.url}" in doctor.stdout
            time.sleep(max(0.0, 20 - (time.monotonic() - outage_started)))
            during = [r for r in caplog.records if r.name.startswith("spacehooks")]
            own_podman.start()
            deployed = wait(lambda: (s := engine.space("alice/outage")) and s["commit"] == second
                            and s["stage"] == "RUNNING" and s, 300, "the second version deployed after the outage")
        finally:
            stop.set()
            loop.join(60)
            if own_podman.proc.poll() is not None:
                own_podman.start()  # the engine fixture removes the test's containers through it
    assert [r.getMessage() for r in during if r.exc_info] == []  # before: a traceback per container every 2 s
    assert len(during) <= 6, [r.getMessage() for r in during]
    st = state.open(settings)
    final = st.get_build(build_id)
    st.close()
    assert (final["status"], final["attempts"]) == ("succeeded", 1)
    assert urllib.request.urlopen(f"http://127.0.0.1:{deployed['port']}/", timeout=10).status == 200


def test_a_build_whose_service_goes_away_as_it_begins_is_queued_again(own_podman, engine, monkeypatch):
    # bench/soak saw it: a push just before the service went down failed its build with "Podman
    # service not reachable" (recorded as the Space's failure) and the pushed version never ran
    engine.configure(podman_url=own_podman.url)
    engine.settings = config.load()
    settings = engine.settings
    bare, work = engine.create("alice/begin", {"README.md": README,
                                               "Dockerfile": "FROM localhost/spacehooks/python:3.11\n" + SERVE})
    from spacehooks.build import builder
    real_build = builder.build

    def build_after_the_service_went(*args, **kwargs):
        own_podman.kill()  # claimed while the service answered; gone before the build's first call
        return real_build(*args, **kwargs)
    monkeypatch.setattr(builder, "build", build_after_the_service_went)
    assert push(work, str(bare)).returncode == 0
    commit = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    try:
        assert worker.Worker(settings).run_once()
        st = state.open(settings)
        build = st.builds("alice/begin", limit=1)[0]
        st.close()
        assert (build["status"], build["attempts"]) == ("queued", 1)
        assert build["error"].startswith(f"queued again: Podman service not reachable at {own_podman.url}")
        assert engine.space("alice/begin")["stage"] != "BUILD_ERROR"
        monkeypatch.setattr(builder, "build", real_build)
    finally:
        if own_podman.proc.poll() is not None:
            own_podman.start()
    while worker.Worker(settings).run_once():
        pass
    space = engine.space("alice/begin")
    assert (space["stage"], space["commit"]) == ("RUNNING", commit)
    assert urllib.request.urlopen(f"http://127.0.0.1:{space['port']}/", timeout=10).status == 200
