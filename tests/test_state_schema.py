"""Upgrades and rollbacks keep every Space (versioned schema, additive migrations), and a damaged
store is caught at start with the way out (issue 11, items 9 and 11)."""
import importlib.util
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import VENV_BIN
from spacehooks import config, state

FIXTURES = Path(__file__).parent / "fixtures"


def old_state_module():
    """state.py as released at a9c1b88 (schema version 1), to open stores as that release did."""
    spec = importlib.util.spec_from_file_location("state_v1", FIXTURES / "state_v1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def v1_store(tmp_path, spaces=3):
    """A store written by the previous release: its schema, its code, Spaces serving."""
    settings = config.load(tmp_path / "none.yaml", tmp_path / "home")
    old = old_state_module()
    st = old.open(settings)
    assert st.conn.execute("PRAGMA user_version").fetchone()[0] == 0
    for i in range(spaces):
        st.ensure_space(f"alice/s{i}", f"/srv/git/alice/s{i}.git", hardware="cpu-basic")
        st.update_space(f"alice/s{i}", stage="RUNNING", commit=f"{i}" * 40, container=f"c{i}", port=20000 + i,
                        image=f"img{i}", build_id=i + 1, config={"sdk": "docker", "app_port": 8000})
        st.conn.execute('INSERT INTO builds (space_id, "commit", status, created_at) VALUES (?, ?, ?, 1)',
                        (f"alice/s{i}", f"{i}" * 40, "succeeded"))
        st.set_variable(f"alice/s{i}", "GREETING", "hi")
    st.close()
    return settings


def snapshot(settings):
    st = state.open(settings)
    try:
        spaces = [{k: v for k, v in s.items() if k != "updated_at"} for s in st.list_spaces()]
        return spaces, {s["id"]: st.variables(s["id"]) for s in spaces}
    finally:
        st.close()


def test_the_v1_fixture_is_the_released_schema():
    released = subprocess.run(["git", "show", "a9c1b88:spacehooks/state.py"], cwd=Path(__file__).parents[1],
                              stdout=subprocess.PIPE, text=True)
    if released.returncode == 0:  # in a checkout with history; the fixture holds it otherwise
        assert released.stdout == (FIXTURES / "state_v1.py").read_text()
    assert (FIXTURES / "state_schema_v1.sql").read_text().split("\n", 1)[1] in old_state_module().SCHEMA


def test_a_v1_store_is_migrated_and_keeps_every_space(tmp_path):
    settings = v1_store(tmp_path)
    before_conn = sqlite3.connect(settings.db_path)
    before = [tuple(r) for r in before_conn.execute("SELECT * FROM spaces ORDER BY id")]
    before_conn.close()
    st = state.open(settings)
    assert state.schema_version(st) == state.SCHEMA_VERSION == 5
    assert [b["attempts"] for s in st.list_spaces() for b in st.builds(s["id"])] == [0, 0, 0]
    assert [s["restarts"] for s in st.list_spaces()] == [0, 0, 0]
    after = [tuple(r)[:len(before[0])] for r in st.conn.execute("SELECT * FROM spaces ORDER BY id")]
    st.close()
    assert after == before


def test_the_previous_release_opens_a_migrated_store_without_losing_a_space(tmp_path):
    settings = v1_store(tmp_path)
    st = state.open(settings)  # upgrade
    st.ensure_space("bob/new", "/srv/git/bob/new.git", hardware="cpu-basic")
    st.conn.execute('INSERT INTO builds (space_id, "commit", status, attempts, created_at) VALUES (?, ?, ?, 2, 1)',
                    ("bob/new", "f" * 40, "queued"))
    st.close()
    upgraded = snapshot(settings)
    old = old_state_module().open(settings)  # roll back: the old code reads and writes it
    assert [s["id"] for s in old.list_spaces()] == ["alice/s0", "alice/s1", "alice/s2", "bob/new"]
    old.ensure_space("carol/x", "/srv/git/carol/x.git", hardware="cpu-basic")
    old.conn.execute('INSERT INTO builds (space_id, "commit", status, created_at) VALUES (?, ?, ?, 1)',
                     ("carol/x", "e" * 40, "queued"))
    old.update_space("alice/s0", stage="RUNNING_BUILDING")
    old.close()
    st = state.open(settings)  # and forward again
    assert state.schema_version(st) == 5
    assert [b["attempts"] for b in st.builds("carol/x")] == [0]
    assert st.get_space("carol/x")["restarts"] == 0
    assert [b["attempts"] for b in st.builds("bob/new")] == [2]
    st.close()
    spaces, variables = snapshot(settings)
    assert [s["id"] for s in spaces] == ["alice/s0", "alice/s1", "alice/s2", "bob/new", "carol/x"]
    assert spaces[1:4] == upgraded[0][1:4] and variables["alice/s2"] == {"GREETING": "hi"}


def test_processes_migrating_at_once_do_not_trip(tmp_path):
    settings = v1_store(tmp_path)
    barrier, failed = threading.Barrier(6), []

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
    assert failed == []
    st = state.open(settings)
    assert state.schema_version(st) == 5
    st.close()


def test_a_v4_store_is_migrated_to_v5_and_the_previous_release_still_opens_it(tmp_path):
    """Migration 5 (issue 15) only adds the storage table: a store of the release before it keeps
    its Spaces, gains the table, and that release's statements still work on the file."""
    settings = config.load(tmp_path / "none.yaml", tmp_path / "home")
    (tmp_path / "home").mkdir(mode=0o700)
    conn = sqlite3.connect(settings.db_path)
    conn.executescript((FIXTURES / "state_schema_v4.sql").read_text())
    conn.execute("INSERT INTO spaces (id, repo_path, private, created_at, updated_at) VALUES ('alice/a', '/r', 1, 1, 1)")
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'storage'").fetchall() == []
    conn.close()
    st = state.open(settings)
    assert state.schema_version(st) == 5
    assert st.get_space("alice/a")["private"] == 1 and st.storage_all() == []
    assert st.storage_assign("alice/a", "small", 20480, 4)["slot"] == 0
    st.close()
    conn = sqlite3.connect(settings.db_path)  # the v4 release's writes on the migrated file (rollback)
    conn.execute("INSERT OR IGNORE INTO spaces (id, repo_path, hardware, sleep_seconds, created_at, updated_at)"
                 " VALUES ('bob/b', '/r2', NULL, NULL, 1, 1)")
    conn.execute("UPDATE spaces SET private = 0 WHERE id = 'alice/a'")
    conn.commit()
    assert [r[0] for r in conn.execute("SELECT id FROM spaces ORDER BY id")] == ["alice/a", "bob/b"]
    conn.close()
    st = state.open(settings)  # and forward again: nothing to migrate, the storage record kept
    assert state.schema_version(st) == 5 and st.storage_of("alice/a")["tier"] == "small"
    st.close()


def test_a_new_store_starts_at_the_current_version(tmp_path):
    st = state.open(config.load(tmp_path / "none.yaml", tmp_path / "home"))
    assert state.schema_version(st) == state.SCHEMA_VERSION
    st.close()


def damage(settings, how):
    path = settings.db_path
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        with path.open("r+b") as fh:
            fh.write(b"\x00not sqlite\x00" * 8)


def run_cli(settings, *args):
    env = {"SPACEHOOKS_CONFIG": str(settings.path or "/nonexistent"), "SPACEHOOKS_HOME": str(settings.home),
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(VENV_BIN / "spacehooks"), *args], env=env, text=True, timeout=60,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("how, cause", [("truncated", "database disk image is malformed"),
                                        ("overwritten", "file is not a database")])
def test_a_damaged_store_stops_serve_and_worker_and_doctor_reports_it(tmp_path, how, cause):
    settings = v1_store(tmp_path, spaces=200)
    st = state.open(settings)
    st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    st.close()
    damage(settings, how)
    expected = (f"Error: the state store {settings.db_path} is damaged ({cause})\n"
                f"  fix: {state.RECOVERY_HINT}\n")
    for command in ("worker", "serve", "spaces"):
        result = run_cli(settings, command)
        assert (result.returncode, result.stdout) == (1, expected), command
    doctor = run_cli(settings, "doctor")
    assert doctor.returncode == 1
    assert (f"PROBLEM  the state store {settings.db_path} is damaged ({cause})\n  fix: {state.RECOVERY_HINT}\n"
            in doctor.stdout)
