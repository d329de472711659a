"""`spacehooks state rebuild` after the store is deleted or damaged while a Space serves: real push,
real build, real container, real HTTP (issue 11, item 9)."""
import re
import subprocess
import sys
import urllib.request

import pytest

from helpers import push
from spacehooks import state

README = "---\ntitle: Rebuild\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 30s\n---\n"
DOCKERFILE = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\nCOPY --chown=1000:1000 . .\n"
              'CMD ["python", "-m", "http.server", "8000"]\n')


def cli(*args):
    return subprocess.run([sys.executable, "-m", "spacehooks", *args], text=True, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("loss", ["deleted", "truncated"])
def test_rebuild_brings_back_a_serving_space_and_keeps_the_unknown_off(engine, loss):
    bare, work = engine.create("alice/keep", {"README.md": README, "Dockerfile": DOCKERFILE, "index.html": "kept\n"})
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    before = engine.space("alice/keep")
    assert before["stage"] == "RUNNING"
    other, other_work = engine.create("bob/never", {"README.md": README, "Dockerfile": DOCKERFILE})
    assert push(other_work, str(other)).returncode == 0  # queued, never built
    st = state.open(engine.settings)
    st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    st.close()
    db = engine.settings.db_path
    if loss == "deleted":
        for suffix in ("", "-wal", "-shm"):
            db.with_name(db.name + suffix).unlink(missing_ok=True)
    else:
        db.write_bytes(db.read_bytes()[:4096 + 100])
        refused = cli("spaces")
        assert refused.returncode == 1 and "is damaged" in refused.stdout

    result = cli("state", "rebuild")
    assert result.returncode == 0, result.stdout
    assert (f"alice/keep: RUNNING in {before['container']} (build #{before['build_id']}, "
            f"commit {before['commit'][:12]})") in result.stdout
    assert "bob/never: PAUSED (no running container)" in result.stdout
    if loss == "truncated":
        assert "kept the old state.db as " in result.stdout
    after = engine.space("alice/keep")
    for key in ("stage", "container", "port", "commit", "build_id", "image", "repo_path"):
        assert after[key] == before[key], key
    assert after["config"]["app_port"] == 8000
    assert urllib.request.urlopen(f"http://127.0.0.1:{after['port']}/index.html", timeout=10).read() == b"kept\n"
    never = engine.space("bob/never")
    assert never["stage"] == "PAUSED" and never["container"] is None
    assert never["error"].startswith("state store rebuilt: whether this Space served is unknown, so it stays off")
    # new builds never reuse the ids of the old logs and images
    st = state.open(engine.settings)
    try:
        from spacehooks.queue import jobs as queue
        new_id = queue.enqueue(engine.settings, st, "alice/keep", bare, before["commit"], "test")
    finally:
        st.close()
    assert new_id > before["build_id"]
    assert cli("state", "check").returncode == 0
    again = cli("state", "rebuild")
    assert again.returncode == 1
    assert again.stdout == (f"Error: the state store {db} is not damaged: nothing to rebuild\n"
                            "  fix: add --force to replace it anyway (it is kept beside, renamed)\n")


RELEASED = "a9c1b88"  # the release whose store is schema version 1


def test_a_space_keeps_serving_through_an_upgrade_and_a_rollback_of_the_code(engine, tmp_path, monkeypatch):
    import os
    import signal
    import sqlite3
    import time

    from test_engine_restore import Serve
    bare, work = engine.create("alice/upgrade", {"README.md": README, "Dockerfile": DOCKERFILE, "v.txt": "v1\n"})
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    before = engine.space("alice/upgrade")
    # the store as the released code left it: schema version 1, none of the later columns
    from spacehooks.state.store import MIGRATIONS
    conn = sqlite3.connect(engine.settings.db_path)
    for statements in MIGRATIONS.values():  # every column a later version added
        for statement in statements:
            added = re.match(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", statement)
            if added:
                conn.execute(f"ALTER TABLE {added.group(1)} DROP COLUMN {added.group(2)}")
    conn.execute("PRAGMA user_version = 0")
    conn.close()
    old_tree = tmp_path / "released"
    old_tree.mkdir()
    archive = subprocess.run(f"git archive {RELEASED} spacehooks | tar -x -C {old_tree}", shell=True,
                             cwd=os.path.dirname(os.path.dirname(__file__)), stderr=subprocess.PIPE, text=True)
    assert archive.returncode == 0, archive.stderr

    def serve_with(code_dir):
        serve = Serve(engine)
        env = {**os.environ, "PYTHONPATH": str(code_dir)}
        with serve.log.open("a") as log:
            serve.proc = subprocess.Popen([sys.executable, "-m", "spacehooks", "serve"], stdout=log,
                                          stderr=subprocess.STDOUT, env=env, cwd=code_dir)
        def answers():
            try:
                return serve.get("alice/upgrade") == (200, "v1\n")
            except OSError:  # not listening yet
                return False
        serve.wait_for(answers, "the gateway does not serve it", 60)
        return serve

    new_code = os.path.dirname(os.path.dirname(__file__))
    for code in (new_code, old_tree, new_code):  # upgrade, roll back, upgrade again
        serve = serve_with(code)
        # the container was never replaced: it served all along
        space = engine.space("alice/upgrade")
        assert (space["container"], space["port"], space["stage"]) == (before["container"], before["port"], "RUNNING")
        assert urllib.request.urlopen(f"http://127.0.0.1:{before['port']}/v.txt", timeout=10).read() == b"v1\n"
        serve.kill(signal.SIGTERM)
    st = state.open(engine.settings)
    assert state.schema_version(st) == state.SCHEMA_VERSION
    st.close()
