"""Capacity (issue 15): Spaces whose flavors together exceed what the server gives them wait in
WAITING_CAPACITY, saying what they wait for, and start when room frees. Real pushes, real
containers; the machine's size is declared small in the test's configuration."""
import urllib.request

from click.testing import CliRunner

from helpers import push

APP = ("import http.server\n"
       "class H(http.server.BaseHTTPRequestHandler):\n"
       "    def do_GET(self):\n"
       "        self.send_response(200); self.end_headers(); self.wfile.write(b'up')\n"
       "http.server.HTTPServer(('0.0.0.0', 8000), H).serve_forever()\n")
README = "---\ntitle: Cap\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 60s\n---\n"
DOCKERFILE = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\nCOPY --chown=1000:1000 . .\n"
              'CMD ["python", "app.py"]\n')


def answers(engine, space_id):
    space = engine.space(space_id)
    with urllib.request.urlopen(f"http://127.0.0.1:{space['port']}/", timeout=30) as response:
        return response.read() == b"up"


def test_a_space_that_does_not_fit_waits_and_starts_when_room_frees(engine):
    from spacehooks import cli, config
    from spacehooks.admin import spaces as admin
    from spacehooks.run import runner
    from spacehooks.run import admission
    engine.configure(capacity={"memory_mb": 1536, "cpus": 4},
                     hardware={"cpu-basic": {"cpus": 1, "memory_mb": 1024}, "tiny": {"cpus": 1, "memory_mb": 256},
                               "huge": {"cpus": 1, "memory_mb": 4096}})
    engine.settings = config.load()
    for space_id in ("alice/one", "bob/two"):
        bare, work = engine.create(space_id, {"README.md": README, "Dockerfile": DOCKERFILE, "app.py": APP})
        assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 2
    one, two = engine.space("alice/one"), engine.space("bob/two")
    assert one["stage"] == "RUNNING" and answers(engine, "alice/one")
    assert two["stage"] == "WAITING_CAPACITY" and two["container"] is None
    assert two["error"] == "waiting for 1024 MB of memory: 512 free of 1536 (in use by alice/one)"

    env = {"SPACEHOOKS_CONFIG": str(engine.config), "SPACEHOOKS_HOME": str(engine.home)}
    listing = CliRunner().invoke(cli.cli, ["hardware", "list"], env=env)
    assert listing.exit_code == 0, listing.output
    assert "memory   used 1024 MB of 1536 MB, free 512 MB (machine 1536, overcommit 1)" in listing.output
    assert "1 Space(s) running; waiting for room: bob/two" in listing.output

    runner.sleep(engine.settings, "alice/one")  # room frees: the worker's next pass starts the waiting Space
    assert engine.space("bob/two")["stage"] == "WAITING_CAPACITY"
    assert engine.drain() == 0
    two = engine.space("bob/two")
    assert two["stage"] == "RUNNING" and answers(engine, "bob/two")

    # a sleeping Space that no longer fits cannot wake, and says why
    woke = None
    try:
        runner.wake(engine.settings, "alice/one")
    except Exception as exc:  # noqa: BLE001 - the message is what is checked
        woke = str(exc)
    assert "WAITING_CAPACITY: waiting for 1024 MB of memory: 512 free of 1536 (in use by bob/two)" in woke
    paused = admin.pause(engine.settings, "bob/two")  # pausing starts what waits at once
    assert (paused.stage, paused.admitted) == ("PAUSED", ("alice/one",))
    assert engine.space("alice/one")["stage"] == "RUNNING" and answers(engine, "alice/one")

    # a small flavor fits beside it; one bigger than the machine never waits, it fails at once
    resumed = CliRunner().invoke(cli.cli, ["resume", "bob/two"], env=env)  # waiting is no failure
    assert (resumed.exit_code, resumed.output) == (0, "bob/two: WAITING_CAPACITY\n  waiting for 1024 MB of memory: "
                                                      "512 free of 1536 (in use by alice/one)\n")
    assert engine.space("bob/two")["stage"] == "WAITING_CAPACITY"
    from spacehooks.admin import limits
    limits.set_hardware(engine.settings, "bob/two", "tiny")
    admission.admit_waiting(engine.settings)
    assert engine.space("bob/two")["stage"] == "RUNNING" and answers(engine, "bob/two")
    runner.stop(engine.settings, "bob/two")
    limits.set_hardware(engine.settings, "bob/two", "huge")
    runner.start(engine.settings, "bob/two")
    two = engine.space("bob/two")
    assert (two["stage"], two["error"]) == (
        "RUNTIME_ERROR", "hardware huge needs 4096 MB of memory; this machine gives Spaces 1536 "
                         "(capacity.overcommit memory 1)")

    # the gateway's sleeper putting an idle Space to sleep starts the one waiting for its room
    import asyncio
    import time
    from spacehooks import state
    from spacehooks.gateway.registry import Registry
    from spacehooks.gateway.sleeper import Sleeper
    limits.set_hardware(engine.settings, "bob/two", "cpu-basic")
    runner.start(engine.settings, "bob/two")
    assert engine.space("bob/two")["stage"] == "WAITING_CAPACITY"
    st = state.open(engine.settings)
    st.update_space("alice/one", sleep_seconds=1, last_request_at=time.time() - 60)
    st.close()
    sleeper = Sleeper(engine.settings, Registry(engine.settings))
    try:
        assert asyncio.run(sleeper.sleep_idle()) == ["alice/one"]
    finally:
        sleeper.close()
    assert engine.space("alice/one")["stage"] == "SLEEPING"
    assert engine.space("bob/two")["stage"] == "RUNNING" and answers(engine, "bob/two")
