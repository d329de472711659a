"""Git and what runs never drift apart: a push post-receive could not record (a real full tmpfs, a
real held lock) is queued by the worker's drift check; the pusher sees one line, never a traceback;
a ref moved without the gate is checked before anything is built (issue 11, item 6)."""
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import bare_repo, git, push, work_repo
from spacehooks import config, hooks, state
from spacehooks.queue import heal
from spacehooks.run import worker

README = "---\ntitle: Heal\nsdk: static\n---\n"


def remote_lines(result):
    return [line.removeprefix("remote: ").rstrip() for line in result.stdout.splitlines()
            if line.startswith("remote: ")]


@pytest.fixture
def small_home(tmp_path, monkeypatch):
    """SPACEHOOKS_HOME on a real 2 MB tmpfs (needs root, as the server's own tests do)."""
    home = tmp_path / "small-home"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(home)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (run the tests as root): {mounted.stdout}")
    monkeypatch.setenv("SPACEHOOKS_HOME", str(home))
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def space(server, home):
    bare = bare_repo(server.root, "alice/heal")
    subprocess.run([sys.executable, "-m", "spacehooks", "install", str(bare)], check=True, stdout=subprocess.DEVNULL)
    work = work_repo(server.root.parent / "work", {"README.md": README, "index.html": "one\n"})
    settings = config.load(server.config, home)
    return bare, work, settings


def commit(work, text):
    (work / "index.html").write_text(text)
    git("commit", "-qam", text.strip(), cwd=work)
    return git("rev-parse", "HEAD", cwd=work).stdout.strip()


def serve_worker(settings):
    stop = threading.Event()
    thread = threading.Thread(target=worker.Worker(settings).run, args=(stop,), kwargs={"restore": False}, daemon=True)
    thread.start()
    return stop, thread


def wait_deployed(settings, sha, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        st = state.open(settings)
        try:
            found = st.get_space("alice/heal")
        finally:
            st.close()
        if found and found["commit"] == sha and found["stage"] == "RUNNING":
            return found
        time.sleep(0.5)
    raise AssertionError(f"{sha[:12]} not deployed within {seconds}s: {found}")


def test_a_push_on_a_full_disk_is_deployed_once_there_is_room(server, small_home):
    bare, work, settings = space(server, small_home)
    assert push(work, str(bare)).returncode == 0
    first = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    stop, thread = serve_worker(settings)
    try:
        wait_deployed(settings, first)
        filler = fill(small_home)
        second = commit(work, "two\n")
        result = push(work, str(bare))
        assert result.returncode == 0
        assert git("rev-parse", "main", cwd=bare).stdout.strip() == second
        problems = [line for line in remote_lines(result) if line.startswith(" !")]
        assert len(problems) == 1, result.stdout
        assert problems[0].startswith(" !     The push is stored, but its build could not be recorded (")
        assert problems[0].endswith("); the server queues it within a minute.")
        assert "Traceback" not in result.stdout + (result.stderr or "")
        filler.unlink()
        healed = wait_deployed(settings, second, seconds=60 + heal.SETTLE)
    finally:
        stop.set()
        thread.join(30)
    st = state.open(settings)
    builds = st.builds("alice/heal")
    st.close()
    assert [(b["commit"], b["pusher"], b["status"]) for b in builds][0] == (second, heal.PUSHER, "succeeded")
    assert healed["error"] is None


def test_a_push_while_the_store_is_locked_is_queued_by_the_next_pass(server, tmp_path):
    bare, work, settings = space(server, server.home)
    assert push(work, str(bare)).returncode == 0
    assert worker.Worker(settings).run_once()
    second = commit(work, "two\n")
    holder = sqlite3.connect(settings.db_path, timeout=1)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock past the 30 s wait
    try:
        result = push(work, str(bare))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert remote_lines(result)[-1] == (" !     " + hooks.NOT_RECORDED.format(reason="database is locked"))
    assert "Traceback" not in result.stdout + (result.stderr or "")
    os.utime(bare / "refs" / "heads" / "main", (time.time() - 60, time.time() - 60))
    healer = heal.Healer(settings)
    st = state.open(settings)
    try:
        done = healer.run(st)
        assert list(done) == ["alice/heal"]
        assert done["alice/heal"].endswith(f"queued for {second[:12]}, a push that was not recorded")
        assert healer.run(st) == {}  # recorded now: nothing more to do
    finally:
        st.close()
    assert worker.Worker(settings).run_once()
    assert wait_deployed(settings, second, seconds=5)["stage"] == "RUNNING"


def test_a_ref_moved_around_the_gate_is_checked_before_it_is_built(server):
    bare, work, settings = space(server, server.home)
    assert push(work, str(bare)).returncode == 0
    assert worker.Worker(settings).run_once()
    # the git account writes the ref itself: no pre-receive ran
    (work / "config.py").write_text('TOKEN = "hf_' + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z" + '"\n')
    git("add", "config.py", cwd=work)
    git("commit", "-qm", "token", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    git("push", "-q", "--no-verify", str(bare), "HEAD:refs/heads/side", cwd=work)
    git("update-ref", "refs/heads/main", sha, cwd=bare)
    os.utime(bare / "refs" / "heads" / "main", (time.time() - 60, time.time() - 60))
    st = state.open(settings)
    try:
        done = heal.Healer(settings).run(st)
        assert done["alice/heal"].startswith(f"commit {sha[:12]} on main was not pushed through the checks and fails them: ")
        assert [b["commit"] for b in st.builds("alice/heal")] != [] and all(
            b["commit"] != sha for b in st.builds("alice/heal"))
        assert st.get_space("alice/heal")["error"] == done["alice/heal"]
    finally:
        st.close()


def test_drift_is_decided_from_tip_and_state_alone():
    tip = "a" * 40
    assert heal.drift(tip, None, []) is True  # a first push never recorded
    assert heal.drift(tip, {"stage": "RUNNING", "commit": "b" * 40}, [{"commit": "b" * 40}]) is True
    assert heal.drift(tip, {"stage": "RUNNING", "commit": tip}, []) is False
    assert heal.drift(tip, {"stage": "RUNNING_BUILDING", "commit": "b" * 40}, [{"commit": tip}]) is False
    assert heal.drift(tip, {"stage": "BUILD_ERROR", "commit": None}, [{"commit": tip}]) is False  # not retried
    assert heal.drift(tip, {"stage": "PAUSED", "commit": "b" * 40}, []) is False
    assert heal.drift(None, None, []) is False


def test_a_killed_post_receive_is_healed(server):
    bare, work, settings = space(server, server.home)
    assert push(work, str(bare)).returncode == 0
    assert worker.Worker(settings).run_once()
    # a chained hook runs first: it kills the post-receive process before anything is recorded
    chained = bare / "hooks" / ("post-receive" + hooks.CHAINED_SUFFIX)
    chained.write_text("#!/bin/sh\nkill -9 $PPID\n")
    chained.chmod(0o755)
    second = commit(work, "two\n")
    result = push(work, str(bare))
    assert result.returncode == 0 and git("rev-parse", "main", cwd=bare).stdout.strip() == second
    st = state.open(settings)
    try:
        assert all(b["commit"] != second for b in st.builds("alice/heal"))
        os.utime(bare / "refs" / "heads" / "main", (time.time() - 60, time.time() - 60))
        assert list(heal.Healer(settings).run(st)) == ["alice/heal"]
    finally:
        st.close()
    assert worker.Worker(settings).run_once()
    assert wait_deployed(settings, second, seconds=5)["stage"] == "RUNNING"
