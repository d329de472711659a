"""Opening the state store while others do (serve's threads, post-receive, the CLI), and a worker
loop that outlives a failed step."""
import logging
import sqlite3
import threading
import time

from spacehooks import config, state
from spacehooks.run import worker


def test_many_threads_open_a_new_store_at_once(tmp_path):
    # serve's worker and gateway threads do this on a new server; before the fix about one
    # round in fifteen failed here with "database is locked"
    failed = []
    for attempt in range(60):
        settings = config.load(tmp_path / "none.yaml", tmp_path / f"home{attempt}")
        barrier = threading.Barrier(6)

        def open_once():
            barrier.wait()
            try:
                state.open(settings).close()
            except Exception as exc:  # collected for the assertion, which shows it
                failed.append(repr(exc))
        threads = [threading.Thread(target=open_once) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        conn = sqlite3.connect(settings.db_path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    assert failed == []


def test_worker_loop_goes_on_after_a_failed_step(tmp_path, monkeypatch, caplog):
    settings = config.load(tmp_path / "none.yaml", tmp_path / "home")
    monkeypatch.setattr(worker, "RETRY_PAUSE", 0.1)
    real = worker.Worker._housekeeping
    failures = []

    def flaky(self):
        if len(failures) < 2:
            failures.append(1)
            raise sqlite3.OperationalError("database is locked")
        real(self)

    monkeypatch.setattr(worker.Worker, "_housekeeping", flaky)
    stop = threading.Event()
    w = worker.Worker(settings)
    thread = threading.Thread(target=w.run, args=(stop,), kwargs={"restore": False}, daemon=True)
    with caplog.at_level(logging.ERROR, logger="spacehooks"):
        thread.start()
        st = state.open(settings)
        deadline = time.monotonic() + 20
        while not st.worker_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = st.worker_alive()
        st.close()
        stop.set()
        thread.join(10)
    assert alive and len(failures) == 2
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("spacehooks")]
    assert len(messages) == 2 and all("step failed, see " in m and "trying again in 0.1s" in m for m in messages)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask can only be read by setting it)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))


def test_opening_stores_never_changes_what_other_threads_create(tmp_path):
    # os.umask is process-wide: while one thread opened the store under umask 002, files
    # another thread made (sshd's /run/sshd on a new CI machine) came out group-writable
    import os
    baseline = _umask()
    made = tmp_path / "made"
    made.mkdir()
    stop = threading.Event()
    seen = set()

    def create_files():
        n = 0
        while not stop.is_set():
            seen.add(_umask())
            os.close(os.open(made / f"f{n}", os.O_CREAT | os.O_WRONLY, 0o777))
            n += 1
    creator = threading.Thread(target=create_files)
    creator.start()
    try:
        for attempt in range(40):
            settings = config.load(tmp_path / "none.yaml", tmp_path / f"home{attempt}")
            st = state.open(settings)
            st.conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
            st.close()
    finally:
        stop.set()
        creator.join(10)
    # whatever the machine's umask is, nobody changed it meanwhile
    assert seen == {baseline}
    modes = {oct(p.stat().st_mode & 0o777) for p in made.iterdir()}
    assert modes == {oct(0o777 & ~baseline)}
    # the store's own files are the server's alone
    db = settings.db_path
    assert (os.stat(db).st_mode & 0o777) == 0o600
    st = state.open(settings)
    st.conn.execute("INSERT INTO t VALUES (1)")
    for suffix in ("-wal", "-shm"):
        assert (os.stat(f"{db}{suffix}").st_mode & 0o777) == 0o600
    st.close()
