"""Space logs bounded by size (build logs keep head and tail, run logs rotate) and `gc`
pruning old logs, by hand and on the worker's schedule."""
import io
import logging
import subprocess
import sys
import threading
import time

import requests
from gateway_support import gw, log_lines, loops  # noqa: F401 - fixtures
from helpers import git, push, write_files

from spacehooks import config, logs
from spacehooks.admin import images
from spacehooks.run import worker

STATIC_README = "---\ntitle: Static\nsdk: static\n---\n"
CHATTY_README = "---\ntitle: Chatty\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 60s\n---\n"
# 600 numbered lines of 41 bytes (24600 bytes) before the app serves: several rotations
CHATTY_DOCKERFILE = (
    "FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\n"
    'CMD ["python", "-u", "-c", "import http.server\\n'
    "for n in range(600): print(f'line {n:03d} ' + 'x' * 31)\\n"
    "http.server.test(http.server.SimpleHTTPRequestHandler, port=8000, bind='0.0.0.0')\"]\n")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "spacehooks", *args], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_long_build_log_keeps_its_head_and_tail():
    out = io.StringIO()
    capped = logs.CappedLog(out, 100)
    for n in range(40):
        capped.write(f"line {n:02d}")
    capped.end()
    capped.write("Starting the new version")
    assert out.getvalue() == (
        "line 00\nline 01\nline 02\nline 03\nline 04\nline 05\n"
        "[spacehooks] the build log passed logs.max_bytes: its end follows when the build ends\n"
        "[spacehooks] 224 bytes of build output left out (logs.max_bytes)\n"
        "line 34\nline 35\nline 36\nline 37\nline 38\nline 39\nStarting the new version\n")


def test_a_short_build_log_is_left_as_it_is():
    out = io.StringIO()
    capped = logs.CappedLog(out, 100)
    capped.write("one")
    capped.end()
    capped.write("two")
    assert out.getvalue() == "one\ntwo\n"


def test_the_log_stream_follows_the_run_log_across_a_rotation(gw):
    gw.add_space("logs/stream", port=1)
    run_log = gw.state.run_log_path("logs/stream")
    run_log.parent.mkdir(parents=True)
    run_log.write_text("a1\na2\n")
    text = ""
    # run logs are for the Space's members (issue 13)
    from spacehooks.access import accounts
    accounts.add_user(gw.settings, gw.state, "logs")
    token = accounts.create_token(gw.state, "logs", "read")[1]
    with requests.get(gw.url + "/api/spaces/logs/stream/logs/run", stream=True, timeout=10,
                      headers={"Authorization": f"Bearer {token}"}) as stream:
        chunks = stream.iter_content(None)
        while log_lines(text) != ["a1", "a2"]:
            text += next(chunks).decode()
        with run_log.open("a") as fh:  # the last line before the rotation, then the new file
            fh.write("a3\n")
        assert logs.rotate(run_log, {"logs.max_bytes": 4, "logs.keep": 1}) is True
        run_log.write_text("b1\n")
        while len(log_lines(text)) < 4:
            text += next(chunks).decode()
    assert log_lines(text) == ["a1", "a2", "a3", "b1"]


def _run_worker(settings, gc=None):
    stop = threading.Event()
    thread = threading.Thread(target=worker.Worker(settings, gc=gc).run, args=(stop,),
                              kwargs={"restore": False}, daemon=True)
    thread.start()
    return stop, thread


def _wait(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_the_run_log_rotates_by_size_while_the_app_prints(engine):
    engine.configure(logs={"max_bytes": 4096, "keep": 2})
    settings = config.load()
    space_id = "logs/chatty"
    bare, work = engine.create(space_id, {"README.md": CHATTY_README, "Dockerfile": CHATTY_DOCKERFILE})
    assert push(work, str(bare)).returncode == 0
    run_log = engine.home / "logs" / "run" / "logs" / "chatty.log"
    stop, thread = _run_worker(settings)
    try:
        _wait(lambda: (engine.space(space_id) or {}).get("stage") == "RUNNING", 300, "the Space to run")
        _wait(lambda: "line 599" in "".join(p.read_text() for p in run_log.parent.glob("chatty.log*")),
              30, "the app's last line in the run log")
    finally:
        stop.set()
        thread.join(30)
    names = sorted(p.name for p in run_log.parent.iterdir())
    assert names == ["chatty.log", "chatty.log.1", "chatty.log.2"]
    for copy in ("chatty.log.1", "chatty.log.2"):  # each copy ends at the first write past the limit
        assert 4096 <= (run_log.parent / copy).stat().st_size < 4096 + 200
    text = "".join((run_log.parent / n).read_text() for n in ("chatty.log.2", "chatty.log.1", "chatty.log"))
    numbers = [int(line.split()[1]) for line in text.splitlines() if line.startswith("line ")]
    assert numbers == list(range(numbers[0], 600))  # the oldest lines went, in order, none twice
    assert numbers[0] > 200


def _static_space_with_builds(engine, space_id, count):
    bare, work = engine.create(space_id, {"README.md": STATIC_README, "index.html": "v1\n"})
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    for n in range(2, count + 1):
        write_files(work, {"index.html": f"v{n}\n"})
        git("commit", "-qam", f"v{n}", cwd=work)
        assert push(work, str(bare)).returncode == 0
        assert engine.drain() == 1
    return bare, work


def test_gc_prunes_old_build_logs_run_log_copies_and_logs_of_deleted_spaces(engine):
    engine.configure(run={**engine.values["run"], "keep_builds": 1}, logs={"keep": 2})
    _static_space_with_builds(engine, "gc/page", 3)
    assert cli("rollback", "gc/page", "1").returncode == 0
    served = engine.space("gc/page")["commit"]
    static = engine.home / "static" / "gc" / "page"
    old_deploys = sorted(p.name for p in static.iterdir() if p.name != served)
    assert len(old_deploys) == 2  # v2 and v3: each deploy wrote its own folder
    run_dir = engine.home / "logs" / "run" / "gc"
    run_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 6):
        (run_dir / f"page.log.{n}").write_text(f"copy {n}\n")
    ghost_builds = engine.home / "logs" / "builds" / "ghost" / "gone"
    ghost_builds.mkdir(parents=True)
    (ghost_builds / "4.log").write_text("old\n")
    (engine.home / "logs" / "run" / "ghost").mkdir(parents=True)
    (engine.home / "logs" / "run" / "ghost" / "gone.log").write_text("old\n")

    collected = cli("gc")  # keeps the newest build (#3) and the current one (#1)
    assert collected.stdout == ("0 old image(s) removed\n"
                                "removed logs/builds/gc/page/2.log\n"
                                "removed logs/run/gc/page.log.3\n"
                                "removed logs/run/gc/page.log.4\n"
                                "removed logs/run/gc/page.log.5\n"
                                "removed logs/builds/ghost/gone/\n"
                                "removed logs/run/ghost/gone.log\n"
                                "6 old log(s) removed\n"
                                + "".join(f"removed static/gc/page/{c}/\n" for c in old_deploys)
                                + "2 old static deploy(s) removed\n")
    assert [p.name for p in static.iterdir()] == [served]
    builds = engine.home / "logs" / "builds" / "gc" / "page"
    assert sorted(p.name for p in builds.iterdir()) == ["1.log", "3.log"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["page.log.1", "page.log.2"]
    assert not (engine.home / "logs" / "run" / "ghost" / "gone.log").exists()
    assert cli("gc").stdout == "0 old image(s) removed\n0 old log(s) removed\n0 old static deploy(s) removed\n"


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_the_worker_runs_gc_on_its_schedule(engine):
    engine.configure(run={**engine.values["run"], "keep_builds": 1, "gc_interval_seconds": 1})
    settings = config.load()
    _static_space_with_builds(engine, "gc/timed", 2)
    old_log = engine.home / "logs" / "builds" / "gc" / "timed" / "1.log"
    assert old_log.exists()
    seen = _Lines()
    logger = logging.getLogger("spacehooks.worker")
    logger.addHandler(seen)
    level = logger.level
    logger.setLevel(logging.INFO)
    stop, thread = _run_worker(settings, gc=images.gc)
    try:
        _wait(lambda: not old_log.exists(), 20, "the scheduled gc")
        _wait(lambda: seen.lines, 5, "the gc summary")
    finally:
        stop.set()
        thread.join(30)
        logger.removeHandler(seen)
        logger.setLevel(level)
    assert seen.lines[0] == "scheduled gc: 0 old image(s) removed, 1 old log(s) removed, 1 old static deploy(s) removed"
    assert (engine.home / "logs" / "builds" / "gc" / "timed" / "2.log").exists()


def test_gc_interval_zero_never_runs_gc(tmp_path):
    (tmp_path / "c.yaml").write_text("run:\n  gc_interval_seconds: 0\n")
    calls = []
    w = worker.Worker(config.load(tmp_path / "c.yaml", tmp_path / "home"), gc=lambda s: calls.append(1))
    w._last_gc -= 10 ** 6
    assert w.scheduled_gc() is False and calls == []
