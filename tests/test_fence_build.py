"""Builds are confined like Spaces: RUN steps under memory, CPU and process limits (root's
processes included) with fewer capabilities. Real `spacehooks serve`, real pushes, real
Podman builds; while hostile builds run, the gateway and a running Space keep answering."""
import re
import threading
import uuid
import time
import urllib.error
import urllib.request

import pytest

from helpers import push
from test_engine_restore import DOCKER_README, DOCKERFILE, Serve, deployed

BASE = "FROM localhost/spacehooks/python:3.11\n"
# More processes than build.pids allows (64), each one held; stops by itself at 200 so that the
# same test run on code without the limit ends instead of filling the machine.
FORK = """import os, sys, time
n = 0
try:
    while n < 200:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError as exc:
    print("fork failed after", n, exc)
    sys.exit(1)
print("forked", n)
"""
# More memory than build.memory_mb allows (256 MB), touched; stops by itself at 640 MB.
HOG = """chunks = []
for i in range(40):
    chunks.append(bytearray(16 * 1024 * 1024))
print("allocated", len(chunks) * 16, "MB")
"""


def attack(script):
    # a fresh comment: the step must run, not come from the layer cache of an earlier run
    return {"README.md": DOCKER_README, "attack.py": f"# {uuid.uuid4()}\n{script}",
            "Dockerfile": BASE + "COPY attack.py /tmp/attack.py\nRUN python3 /tmp/attack.py\n"}


class Probe(threading.Thread):
    """GETs each URL every 100 ms; records (url, status or error, seconds) per answer."""

    def __init__(self, requests):
        super().__init__(daemon=True)
        self.requests, self.answers, self.done = requests, [], threading.Event()

    def run(self):
        while not self.done.wait(0.1):
            for request in self.requests:
                started = time.monotonic()
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        response.read()
                        outcome = response.status
                except urllib.error.HTTPError as exc:
                    outcome = exc.code
                except OSError as exc:
                    outcome = repr(exc)
                self.answers.append((request.full_url, request.get_header("Host"), outcome, time.monotonic() - started))


@pytest.fixture
def fenced(engine):
    engine.configure(build={**engine.values["build"], "memory_mb": 256, "pids": 64, "cpus": 1})
    serve = Serve(engine)
    yield serve
    serve.kill()


def failed(engine, space_id):
    from spacehooks import state
    st = state.open(engine.settings)
    try:
        builds = st.builds(space_id)
    finally:
        st.close()
    return bool(builds) and builds[0]["status"] == "failed"


def build_error(engine, space_id):
    from spacehooks import state
    st = state.open(engine.settings)
    try:
        return st.builds(space_id)[0]["error"]
    finally:
        st.close()


def test_fork_bomb_and_memory_hog_fail_their_builds_while_the_host_answers(engine, fenced):
    fenced.start()
    bare, work = engine.create("fence/web", {"README.md": DOCKER_README, "Dockerfile": DOCKERFILE, "v.txt": "up\n"})
    assert push(work, str(bare)).returncode == 0
    fenced.wait_for(lambda: deployed(engine, "fence/web", 1), "the running Space was not deployed")
    port = engine.space("fence/web")["port"]
    gateway = f"http://127.0.0.1:{fenced.port}"
    probe = Probe([urllib.request.Request(f"{gateway}/"),
                   urllib.request.Request(f"{gateway}/v.txt", headers={"Host": "fence-web.localhost"}),
                   urllib.request.Request(f"http://127.0.0.1:{port}/v.txt")])
    probe.start()
    try:
        for space_id, script in (("fence/bomb", FORK), ("fence/hog", HOG)):
            bare, work = engine.create(space_id, attack(script))
            assert push(work, str(bare)).returncode == 0
        fenced.wait_for(lambda: failed(engine, "fence/bomb") and failed(engine, "fence/hog"),
                        "the hostile builds did not fail", timeout=300)
    finally:
        probe.done.set()
        probe.join(10)
    assert build_error(engine, "fence/bomb").startswith(
        "a build step reached the build's process limit (build.pids = 64): "), build_error(engine, "fence/bomb")
    assert build_error(engine, "fence/hog").startswith(
        "a build step was killed for using all the build's memory (build.memory_mb = 256 MB): "), \
        build_error(engine, "fence/hog")
    assert len(probe.answers) >= 30
    print(f"probe: {len(probe.answers)} answers, slowest {max(a[3] for a in probe.answers):.3f}s")
    bad = [answer for answer in probe.answers if answer[2] != 200 or answer[3] > 1.0]
    assert bad == [], bad[:10]


def test_limits_and_capabilities_are_what_a_run_step_sees(engine):
    engine.configure(build={**engine.values["build"], "memory_mb": 300, "pids": 70, "cpus": 0.5})
    from spacehooks import config
    engine.settings = config.load()
    look = ("RUN cat /proc/self/cgroup | grep -E ':(pids|memory):'; "
            "grep hierarchical_memory_limit /sys/fs/cgroup/memory/memory.stat; "
            "echo quota $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); "
            f"grep CapEff /proc/self/status # {uuid.uuid4()}\n")  # never from the layer cache
    bare, work = engine.create("fence/look", {"README.md": DOCKER_README,
                                              "Dockerfile": BASE + look + 'CMD ["sleep", "1"]\n'})
    assert push(work, str(bare)).returncode == 0
    engine.drain()
    from spacehooks import state
    from spacehooks.push import buildmounts
    st = state.open(engine.settings)
    build = st.builds("fence/look")[0]
    log = st.build_log_path("fence/look", build["id"]).read_text()
    st.close()
    folder = re.search(r":pids:(/spacehooks-build/[0-9a-f]{16}-b\d+-[0-9a-f]{8}/run)\n", log).group(1)
    assert folder.startswith(f"/spacehooks-build/{buildmounts.space_key('fence/look')}-b{build['id']}-")
    assert f":memory:{folder}\n" in log, log
    assert f"hierarchical_memory_limit {300 * 1024 * 1024}\n" in log
    assert "quota 50000 100000\n" in log
    # CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID: apt and pip need no more as root
    assert "CapEff:\t00000000000000fb\n" in log
    # the build's cgroup is gone with the build
    from pathlib import Path
    assert not Path(f"/sys/fs/cgroup/pids{folder}").parent.exists()
