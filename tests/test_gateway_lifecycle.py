"""The gateway in front of Spaces the engine really built and runs: zero-downtime redeploys
(good and failed), sleep and wake through `runner`, static Spaces served from the commit."""
import subprocess
import threading
import time

import requests

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import GatewayUnderTest
from helpers import git, push, write_files

STATIC_README = "---\ntitle: Static\nemoji: 📄\ncolorFrom: red\ncolorTo: pink\nsdk: static\n---\n"
DOCKER_README = "---\ntitle: Docker demo\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 20s\n---\n"
DOCKERFILE = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\nCOPY --chown=1000:1000 . .\n"
              'CMD ["python", "-m", "http.server", "8000"]\n')
BROKEN_DOCKERFILE = DOCKERFILE.replace('CMD ["python", "-m", "http.server", "8000"]', 'CMD ["python", "-c", "raise SystemExit(3)"]')


def podman(*args):
    return subprocess.run(["podman", *args], check=True, text=True, stdout=subprocess.PIPE).stdout.strip()


class RequestLoop(threading.Thread):
    """Requests one after the other through the gateway until stopped; records every outcome."""

    def __init__(self, gw, space_id):
        super().__init__(daemon=True)
        self.url, self.host = gw.url + "/index.html", gw.host(space_id)
        self.results, self.stopping = [], threading.Event()

    def run(self):
        session = requests.Session()
        while not self.stopping.is_set():
            try:
                answer = session.get(self.url, headers={"Host": self.host}, timeout=30)
                self.results.append((answer.status_code, answer.text.strip()))
            except requests.RequestException as exc:
                self.results.append((0, repr(exc)))

    def stop(self):
        self.stopping.set()
        self.join(60)
        return self.results


def deployed(engine, space_id, work, bare, files, message):
    write_files(work, files)
    git("add", "-A", cwd=work)
    git("commit", "-qm", message, cwd=work)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    return engine.space(space_id)


def test_redeploys_good_and_failed_lose_no_request(engine, loops):
    from spacehooks import state
    from spacehooks.run import runner
    bare, work = engine.create("alice/dock", {"README.md": DOCKER_README, "Dockerfile": DOCKERFILE, "index.html": "v1\n"})
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    first = engine.space("alice/dock")
    assert first["stage"] == "RUNNING", first
    gw = GatewayUnderTest(engine, loops)
    loop = RequestLoop(gw, "alice/dock")
    loop.start()
    try:
        time.sleep(1)
        second = deployed(engine, "alice/dock", work, bare, {"index.html": "v2\n"}, "v2")
        assert (second["stage"], second["error"]) == ("RUNNING", None)
        assert second["port"] != first["port"]
        time.sleep(1.5)  # past run.grace_seconds: the old container goes
        st = state.open(engine.settings)
        runner.reap(engine.settings, st)
        st.close()
        time.sleep(1)
        third = deployed(engine, "alice/dock", work, bare, {"Dockerfile": BROKEN_DOCKERFILE}, "broken")
        assert third["stage"] == "RUNNING"
        assert third["error"].startswith("build #3 did not start (RUNTIME_ERROR): the app exited with code 3")
        time.sleep(1)
    finally:
        results = loop.stop()
        gw.stop()
    failures = [r for r in results if r[0] != 200]
    assert failures == []
    bodies = [r[1] for r in results]
    assert len(bodies) > 50
    assert set(bodies) == {"v1", "v2"}
    assert bodies[-1] == "v2" and bodies.index("v2") > 0
    assert bodies[bodies.index("v2"):].count("v1") == 0


def test_idle_space_sleeps_and_the_next_request_wakes_it(engine, loops):
    bare, work = engine.create("alice/nap", {"README.md": DOCKER_README, "Dockerfile": DOCKERFILE, "index.html": "awake\n"})
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    cli = subprocess.run(["spacehooks", "sleep-time", "set", "alice/nap", "2"], env=engine.env(),
                         text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert (cli.returncode, cli.stdout) == (0, "alice/nap sleeps after 2s without requests\n")
    gw = GatewayUnderTest(engine, loops, **{"gateway.sleep_check_seconds": 0.5})
    try:
        deadline = time.monotonic() + 30
        while engine.space("alice/nap")["stage"] != "SLEEPING" and time.monotonic() < deadline:
            time.sleep(0.5)
        asleep = engine.space("alice/nap")
        while podman("ps", "-a", "-q", "--filter", "label=spacehooks.space=alice/nap") and time.monotonic() < deadline:
            time.sleep(0.2)  # the stage changes first, then the container is removed
        assert (asleep["stage"], asleep["container"], asleep["port"]) == ("SLEEPING", None, None)
        # asleep, a Space holds no process and no memory: no container at all, not a paused or stopped one
        assert podman("ps", "-a", "-q", "--filter", "label=spacehooks.space=alice/nap") == ""
        started = time.monotonic()
        answer = requests.get(gw.url + "/index.html", headers={"Host": gw.host("alice/nap")}, timeout=60)
        took = time.monotonic() - started
        assert (answer.status_code, answer.text) == (200, "awake\n")
        assert engine.space("alice/nap")["stage"] == "RUNNING"
        assert took < 20
        runtime = requests.get(gw.url + "/api/spaces/alice/nap/runtime", timeout=10).json()
        assert (runtime["stage"], runtime["sleepTime"], runtime["gcTimeout"]) == ("RUNNING", 2, 2)
    finally:
        gw.stop()


def test_sleep_time_set_refuses_zero_and_unknown_spaces(server):
    def run(*args):
        r = subprocess.run(["spacehooks", "sleep-time", "set", *args], env=server.env(), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return r.returncode, r.stdout
    assert run("alice/none", "0") == (1, "Error: sleep time 0: must be a number of seconds above 0, or -1 for never\n"
                                          "  fix: e.g. `spacehooks sleep-time set alice/none 3600`\n")
    assert run("alice/none", "60") == (1, "Error: no Space 'alice/none'\n  fix: see `spacehooks spaces` for the known Spaces\n")


def test_static_space_is_served_from_the_commit(engine, loops):
    files = {"README.md": STATIC_README, "index.html": "<h1>home</h1>\n", "docs/index.html": "docs\n",
             "app.js": "console.log(1)\n"}
    bare, work = engine.create("alice/site", files)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    gw = GatewayUnderTest(engine, loops)
    host = {"Host": gw.host("alice/site")}
    try:
        home = requests.get(gw.url + "/", headers=host, timeout=10)
        assert (home.status_code, home.text, home.headers["Content-Type"]) == (
            200, "<h1>home</h1>\n", "text/html; charset=utf-8")
        again = requests.get(gw.url + "/", headers={**host, "If-None-Match": home.headers["ETag"]}, timeout=10)
        assert again.status_code == 304
        script = requests.get(gw.url + "/app.js", headers=host, timeout=10)
        assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
        folder = requests.get(gw.url + "/docs", headers=host, timeout=10, allow_redirects=False)
        assert (folder.status_code, folder.headers["Location"]) == (301, "/docs/")
        assert requests.get(gw.url + "/docs/", headers=host, timeout=10).text == "docs\n"
        missing = requests.get(gw.url + "/nope.png", headers=host, timeout=10)
        assert (missing.status_code, missing.text) == (404, "404: nope.png is not in this Space\n")
        assert requests.get(gw.url + "/../../etc/passwd", headers=host, timeout=10).status_code == 404
        # a new push is served as soon as it is deployed, no container involved
        write_files(work, {"index.html": "<h1>new</h1>\n"})
        git("commit", "-qam", "new", cwd=work)
        assert push(work, str(bare)).returncode == 0
        assert engine.drain() == 1
        time.sleep(1.1)
        assert requests.get(gw.url + "/", headers=host, timeout=10).text == "<h1>new</h1>\n"
    finally:
        gw.stop()
