"""A deployed app that crashes or runs out of memory, in a real container behind the real
gateway, with the real worker supervising: restarted with backoff, then RUNTIME_ERROR with the
reason and the log tail everywhere a person looks; a POST the app drops is never repeated."""
import subprocess
import threading
import time

import requests

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import GatewayUnderTest
from helpers import push

README = "---\ntitle: Crashy\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 30s\n---\n"
DOCKERFILE = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\nCOPY --chown=1000:1000 . .\n"
              'CMD ["python", "-u", "app.py"]\n')
APP = '''import http.server, os

POSTS = []

class Handler(http.server.SimpleHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        POSTS.append(self.path)
        if self.path == "/exit":
            print("exiting on request", flush=True)
            os._exit(3)
        if self.path == "/oom":
            print("eating memory", flush=True)
            hog = []
            while True:
                hog.append(b"x" * (16 * 1024 * 1024))
        self.close_connection = True  # /drop: no answer at all

    def do_GET(self):
        if self.path == "/posts":
            body = ",".join(POSTS).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
'''


def cli(engine, *args):
    r = subprocess.run(["spacehooks", *args], env=engine.env(), text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    return r.stdout


def wait_for(what, check, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds}s: {what}")


def test_crashes_are_restarted_then_runtime_error_with_reason_and_log_tail(engine, loops):
    engine.configure(run={**engine.values["run"], "crash_limit": 2, "crash_window_seconds": 600})
    from spacehooks import config
    from spacehooks.run import runner
    from spacehooks.run.worker import Worker
    engine.settings = config.load()
    bare, work = engine.create("alice/crashy", {"README.md": README, "Dockerfile": DOCKERFILE, "app.py": APP,
                                                "index.html": "alive\n"})
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    first = engine.space("alice/crashy")
    assert first["stage"] == "RUNNING", first
    stop = threading.Event()
    worker = threading.Thread(target=Worker(engine.settings).run, args=(stop,), kwargs={"restore": False}, daemon=True)
    worker.start()
    gw = GatewayUnderTest(engine, loops)
    url, host = gw.url, {"Host": gw.host("alice/crashy")}
    try:
        # a POST the app takes and drops without answering reaches it once, and the app stays up
        dropped = requests.post(url + "/drop", data=b"once", headers=host, timeout=30)
        assert dropped.status_code == 502
        assert requests.get(url + "/posts", headers=host, timeout=30).text == "/drop"

        # an exit: started again (the same container, after a pause) and serving
        assert requests.post(url + "/exit", headers=host, timeout=30).status_code == 502
        wait_for("restart after the exit", lambda: "started again in 1s" in (engine.space("alice/crashy")["error"] or ""), 10)
        back = wait_for("an answer after the restart", lambda: _get(url + "/index.html", host), 30)
        assert back == "alive\n"
        space = engine.space("alice/crashy")
        assert (space["stage"], space["container"]) == ("RUNNING", first["container"])
        assert space["error"] == "the app exited with code 3; started again in 1s (exit 1 of 2 allowed within 600s)"
        assert space["restarts"] == 1  # counted in the store, for the gateway's metrics

        # the second exit within the window: RUNTIME_ERROR within 10 s, with the reason and the log tail
        assert requests.post(url + "/exit", headers=host, timeout=30).status_code in (502, 503)
        wait_for("RUNTIME_ERROR", lambda: engine.space("alice/crashy")["stage"] == "RUNTIME_ERROR", 10)
        space = engine.space("alice/crashy")
        reason = "the app exited with code 3 (2 exits within 600s: not started again)"
        assert space["error"].startswith(reason + "\nlog tail:\n")
        assert "exiting on request" in space["error"]
        assert (space["container"], space["port"]) == (None, None)
        status = cli(engine, "status", "alice/crashy")
        assert "stage:     RUNTIME_ERROR\n" in status and f"error:     {reason}\n" in status
        assert "exiting on request" in status
        time.sleep(1.05)  # the gateway reads the store at most a second late
        runtime = requests.get(url + "/api/spaces/alice/crashy/runtime", timeout=10).json()
        assert (runtime["stage"], runtime["errorMessage"]) == ("RUNTIME_ERROR", space["error"])
        page = requests.get(url + "/spaces/alice/crashy", timeout=10).text
        assert "Runtime error" in page and reason in page
        answer = requests.get(url + "/", headers=host, timeout=30)
        assert answer.status_code == 503
        assert answer.text.startswith(f"503: Space alice/crashy is RUNTIME_ERROR: {reason}\n")

        # killed for memory: the reason names the memory limit
        st = gw.state
        st.update_space("alice/crashy", limits={"memory_mb": 128})
        runner.start(engine.settings, "alice/crashy")
        assert engine.space("alice/crashy")["stage"] == "RUNNING"
        time.sleep(1.1)
        requests.post(url + "/oom", headers=host, timeout=60)
        wait_for("restart after the kill", lambda: "started again in 1s" in (engine.space("alice/crashy")["error"] or ""), 10)
        assert engine.space("alice/crashy")["error"].startswith("the app was killed for using more memory than its limit")
        wait_for("an answer after the restart", lambda: _get(url + "/index.html", host), 30)
        requests.post(url + "/oom", headers=host, timeout=60)
        wait_for("RUNTIME_ERROR", lambda: engine.space("alice/crashy")["stage"] == "RUNTIME_ERROR", 10)
        error = engine.space("alice/crashy")["error"]
        assert error.startswith("the app was killed for using more memory than its limit (memory limit reached) "
                                "(2 exits within 600s: not started again)\nlog tail:\n"), error
        assert "eating memory" in error
    finally:
        stop.set()
        worker.join(30)
        gw.stop()


def _get(url, host):
    try:
        answer = requests.get(url, headers=host, timeout=5)
    except requests.RequestException:
        return None
    return answer.text if answer.status_code == 200 else None


def test_no_post_is_sent_twice_and_no_get_fails_during_a_redeploy(engine, loops):
    from helpers import git, write_files
    from test_gateway_lifecycle import RequestLoop
    bare, work = engine.create("alice/twice", {"README.md": README, "Dockerfile": DOCKERFILE, "app.py": APP,
                                               "index.html": "v1\n"})
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    assert engine.space("alice/twice")["stage"] == "RUNNING"
    gw = GatewayUnderTest(engine, loops)
    url, host = gw.url, {"Host": gw.host("alice/twice")}
    loop = RequestLoop(gw, "alice/twice")
    try:
        # one side: a POST the app receives and drops without answering reaches it once
        for path in ("/drop", "/drop", "/drop"):
            assert requests.post(url + path, data=b"x", headers=host, timeout=30).status_code == 502
        assert requests.get(url + "/posts", headers=host, timeout=30).text == "/drop,/drop,/drop"
        # the other: GETs go on through a redeploy without one failing (retried where safe)
        loop.start()
        time.sleep(1)
        write_files(work, {"index.html": "v2\n"})
        git("commit", "-qam", "v2", cwd=work)
        assert push(work, str(bare)).returncode == 0
        assert engine.drain() == 1
        time.sleep(2.5)  # past run.grace_seconds: the old container is removed while GETs run
        from spacehooks import state
        from spacehooks.run import runner
        st = state.open(engine.settings)
        runner.reap(engine.settings, st)
        st.close()
        time.sleep(1)
    finally:
        results = loop.stop()
        gw.stop()
    assert [r for r in results if r[0] != 200] == []
    bodies = [r[1] for r in results]
    assert len(bodies) > 20 and bodies[-1] == "v2" and "v1" in bodies
