"""Persistent /data storage (issue 15) against the real Podman service: real pushes, real
containers, real HTTP to the app. The app keeps a SQLite database on /data and writes to it
all the time from a thread, so blue and green both write while a push swaps them."""
import json
import os
import pwd
import subprocess
import tarfile
import time
import urllib.request

import pytest
from click.testing import CliRunner

from helpers import push, work_repo

APP = r'''
import http.server, json, os, sqlite3, threading, time
VERSION = "{version}"
DB = "/data/app.db"
HAS_DATA = os.path.isdir("/data")
if HAS_DATA:
    con = sqlite3.connect(DB, timeout=60, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, version TEXT, n INTEGER)")
    con.close()

def writer():
    con = sqlite3.connect(DB, timeout=60, isolation_level=None)
    n = 0
    while True:
        con.execute("INSERT INTO t (version, n) VALUES (?, ?)", (VERSION, n))
        n += 1
        time.sleep(0.01)

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = {"version": VERSION, "data": HAS_DATA, "uid": os.getuid(), "hf_home": os.environ.get("HF_HOME")}
        if HAS_DATA and self.path == "/fill":
            try:
                with open("/data/fill.bin", "wb") as fh:
                    while True:
                        fh.write(b"x" * 1048576)
                        fh.flush()
                        os.fsync(fh.fileno())
            except OSError as exc:
                body["error"] = exc.strerror
            os.unlink("/data/fill.bin")
        elif HAS_DATA:
            con = sqlite3.connect(DB, timeout=60)
            body["rows"] = dict(con.execute("SELECT version, COUNT(*) FROM t GROUP BY version").fetchall())
            body["last_id"] = dict(con.execute("SELECT version, MAX(id) FROM t GROUP BY version").fetchall())
            body["first_id"] = dict(con.execute("SELECT version, MIN(id) FROM t GROUP BY version").fetchall())
            body["integrity"] = con.execute("PRAGMA integrity_check").fetchone()[0]
            body["owner"] = os.stat("/data").st_uid
            con.close()
        data = json.dumps(body).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(data)
    def log_message(self, *a):
        pass

if HAS_DATA:
    threading.Thread(target=writer, daemon=True).start()
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
'''
README = "---\ntitle: Data\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 60s\n---\n"
DOCKERFILE = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\nCOPY --chown=1000:1000 . .\n"
              'CMD ["python", "app.py"]\n')


@pytest.fixture(autouse=True)
def unmount_after(server):
    """The loop mounts the test made are gone after it and its containers (the machine has
    few loop devices)."""
    yield
    for line in open("/proc/self/mountinfo").read().splitlines():
        point = line.split(" ")[4]
        if point.startswith(str(server.home / "storage") + "/"):
            subprocess.run(["umount", "--lazy", point], capture_output=True)


def files(version):
    return {"README.md": README, "Dockerfile": DOCKERFILE, "app.py": APP.replace("{version}", version)}


def get(engine, space_id, path="/"):
    space = engine.space(space_id)
    assert space["stage"] == "RUNNING", (space["stage"], space["error"])
    with urllib.request.urlopen(f"http://127.0.0.1:{space['port']}{path}", timeout=60) as response:
        return json.loads(response.read())


def written(engine, space_id, version, more_than=0):
    """The app's answer once its writer has rows of `version` beyond more_than (it starts writing
    a moment after it answers)."""
    for _ in range(200):
        body = get(engine, space_id)
        if body["rows"].get(version, 0) > more_than:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{space_id}: no new rows of {version}: {body}")


def reap(engine):
    from spacehooks import state
    from spacehooks.run import runner
    st = state.open(engine.settings)
    try:
        runner.reap(engine.settings, st)
    finally:
        st.close()


def configure(engine, **run):
    from spacehooks import config
    engine.configure(run={"grace_seconds": 1, "memory_mb": 1024, "cpus": 1, "pids": 256, **run},
                     storage={"tiers": {"small": 32, "medium": 64, "hub-small": 20480}})
    engine.settings = config.load()


def deploy(engine, space_id, version="v1"):
    bare, work = engine.create(space_id, files(version))
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    assert engine.space(space_id)["stage"] == "RUNNING", engine.space(space_id)["error"]
    return bare, work


def test_data_survives_swap_restart_rebuild_sleep_and_reboot(engine):
    from spacehooks.admin import images, spaces as admin
    from spacehooks.run import restore, runner
    from spacehooks.admin import storage as storage_admin
    from spacehooks.run import storage
    configure(engine, grace_seconds=4)
    space_id = "alice/data"
    bare, work = deploy(engine, space_id)
    first_build = engine.space(space_id)["build_id"]
    assert get(engine, space_id)["data"] is False  # no storage yet: no /data
    result = storage_admin.set_tier(engine.settings, space_id, "small")
    assert (result.tier, result.size_mb, result.stage, result.restarted) == ("small", 32, "RUNNING", "RUNNING")
    first = written(engine, space_id, "v1")
    assert (first["data"], first["uid"], first["owner"], first["hf_home"]) == (True, 1000, 1000, "/data/.huggingface")
    time.sleep(1)

    # blue-green: v2 starts while v1 still writes, and v1 keeps writing through its grace period
    work_repo(work, files("v2"), message="v2")
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    time.sleep(5)
    reap(engine)
    swapped = written(engine, space_id, "v2")
    assert swapped["version"] == "v2" and swapped["integrity"] == "ok"
    assert swapped["rows"]["v1"] > first["rows"]["v1"] and swapped["rows"]["v2"] > 0
    assert swapped["last_id"]["v1"] > swapped["first_id"]["v2"]  # both wrote at the same time
    v1_rows = swapped["rows"]["v1"]

    def still_there(label):
        now = get(engine, space_id)
        assert now["integrity"] == "ok", label
        assert now["rows"]["v1"] >= v1_rows and now["rows"]["v2"] >= swapped["rows"]["v2"], label
        return now

    runner.restart(engine.settings, space_id)
    still_there("restart")
    admin.rebuild(engine.settings, space_id, True)
    assert engine.drain() == 1
    still_there("rebuild")
    runner.sleep(engine.settings, space_id)
    runner.wake(engine.settings, space_id)
    still_there("sleep and wake")
    current = engine.space(space_id)["build_id"]
    images.rollback(engine.settings, space_id, first_build)  # the v1 image: same /data
    rolled = get(engine, space_id)
    assert rolled["version"] == "v1" and rolled["integrity"] == "ok" and rolled["rows"]["v1"] >= v1_rows
    v1_rows = written(engine, space_id, "v1", more_than=v1_rows)["rows"]["v1"]
    images.rollback(engine.settings, space_id, current)  # and forward to v2 again
    assert get(engine, space_id)["version"] == "v2"
    time.sleep(5)
    reap(engine)  # the v1 container's grace is over: from here on only v2 writes
    v1_rows = get(engine, space_id)["rows"]["v1"]

    # a reboot: the container stopped, the loop mount gone; restore brings both back in order
    name = engine.space(space_id)["container"]
    subprocess.run(["podman", "stop", "-t", "2", name], check=True, capture_output=True)
    storage.unmount(engine.settings, space_id)
    done = restore.restore_all(engine.settings, echo=lambda s: None)
    assert done[space_id] == f"container {name} started again"
    still_there("reboot")

    # export, remove (the Space restarts without /data), set again (empty), import
    tar = engine.home.parent / "data.tar"
    exported = storage_admin.export(engine.settings, space_id, str(tar))
    with tarfile.open(tar) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert "./app.db" in members and members["./app.db"].uid == 1000
    storage_admin.remove(engine.settings, space_id)
    assert get(engine, space_id)["data"] is False
    assert not storage.image_path(engine.settings, space_id).exists()
    storage_admin.set_tier(engine.settings, space_id, "small")
    assert get(engine, space_id)["rows"].get("v1") is None
    storage_admin.import_(engine.settings, space_id, exported.file)
    back = get(engine, space_id)
    assert back["integrity"] == "ok" and back["rows"]["v1"] == v1_rows


def test_quota_fails_inside_the_space_only_and_delete_asks_first(engine):
    from spacehooks import cli
    from spacehooks.run import runspec
    from spacehooks.admin import storage as storage_admin
    from spacehooks.run import storage
    from spacehooks import state as state_mod
    from spacehooks.engine import podman as podman_engine
    from pathlib import Path
    configure(engine)
    deploy(engine, "alice/full")
    deploy(engine, "bob/other")
    storage_admin.set_tier(engine.settings, "alice/full", "small")
    storage_admin.set_tier(engine.settings, "bob/other", "hub-small")
    # the Hub's 20 GB tier holds a few MB of the host's disk until the Space writes
    assert storage.allocated_mb(engine.settings, "bob/other") < 16
    before = os.statvfs(engine.home)
    full = get(engine, "alice/full", "/fill")
    assert full["error"] == "No space left on device"
    image = storage.image_path(engine.settings, "alice/full")
    assert os.stat(image).st_blocks * 512 <= 32 * 1024 * 1024  # the host gave it no more than its tier
    for _ in range(100):  # the deleted file's blocks go back to the host at the journal's next commit
        if storage.allocated_mb(engine.settings, "alice/full") < 8:
            break
        time.sleep(0.1)
    assert storage.allocated_mb(engine.settings, "alice/full") < 8
    assert os.statvfs(engine.home).f_bavail * before.f_frsize > 1024 ** 3  # the host's disk is fine
    assert get(engine, "bob/other")["integrity"] == "ok"  # the other Space writes on
    # each Space with storage has a host id range of its own, no account's and outside userns=auto's
    ids = {}
    for space_id in ("alice/full", "bob/other"):
        st = state_mod.open(engine.settings)
        spec = runspec.spec(engine.settings, st, engine.space(space_id), "x", engine.space(space_id)["config"], 1, 20000)
        st.close()
        # plain data in the RunSpec: /data of the tier's size, a fixed range instead of userns=auto
        assert (spec.data.target, spec.data.size_mb, spec.userns.size, spec.userns_auto) == \
            ("/data", storage.record(engine.settings, space_id)["size_mb"], 65536, False)
        assert spec.env["HF_HOME"] == "/data/.huggingface"
        kwargs = podman_engine.create_kwargs(spec, Path(engine.home))  # what Podman is asked for
        mapping = [{"container_id": 0, "host_id": spec.userns.host_id, "size": 65536}]
        assert (kwargs["userns_mode"], kwargs["idmappings"]) == ("private", {"UIDMap": mapping, "GIDMap": mapping})
        assert {"type": "bind", "source": spec.data.source, "target": "/data"} in kwargs["mounts"]
        ids[space_id] = spec.userns.host_id
    assert ids["alice/full"] != ids["bob/other"] and all(i >= 2 ** 30 for i in ids.values())
    for host_id in ids.values():
        with pytest.raises(KeyError):
            pwd.getpwuid(host_id + 1000)  # uid 1000 inside is no account's on the host
    subuid = [line.split(":") for line in open("/etc/subuid").read().split()]
    assert not any(int(start) <= i + 1000 < int(start) + int(count) for _, start, count in subuid for i in ids.values())

    runner = CliRunner()
    env = {"SPACEHOOKS_CONFIG": str(engine.config), "SPACEHOOKS_HOME": str(engine.home)}
    answer = runner.invoke(cli.cli, ["delete", "alice/full"], input="n\n", env=env)
    assert answer.exit_code == 1
    assert "This also deletes alice/full's small storage (32 MB, " in answer.output
    assert "every file the Space wrote under /data is deleted for good" in answer.output
    assert image.exists() and engine.space("alice/full") is not None
    answer = runner.invoke(cli.cli, ["storage", "remove", "bob/other"], input="n\n", env=env)
    assert answer.exit_code == 1 and "This deletes bob/other's hub-small storage (20 GB, " in answer.output
    answer = runner.invoke(cli.cli, ["delete", "alice/full", "--yes"], env=env)
    assert answer.exit_code == 0, answer.output
    assert not image.exists() and not storage.is_mounted(storage.mount_path(engine.settings, "alice/full"))
    listing = runner.invoke(cli.cli, ["storage", "list"], env=env)
    assert "bob/other" in listing.output and "alice/full" not in listing.output


def test_state_rebuild_records_storage_again_and_a_new_slot_takes_the_files(engine):
    from spacehooks.admin import rebuild
    from spacehooks.run import runner
    from spacehooks.run import storage
    from spacehooks import state as state_mod
    configure(engine)
    deploy(engine, "alice/kept")
    deploy(engine, "bob/first")
    from spacehooks.admin import storage as storage_admin
    storage_admin.set_tier(engine.settings, "bob/first", "small")  # takes slot 0
    storage_admin.set_tier(engine.settings, "alice/kept", "medium")  # slot 1
    rows = written(engine, "alice/kept", "v1")["rows"]["v1"]
    slot = storage.record(engine.settings, "alice/kept")["slot"]
    assert slot == 1
    db = engine.settings.db_path
    for suffix in ("", "-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    lines = []
    rebuild.rebuild(engine.settings, lines.append)
    assert "alice/kept: medium storage (64 MB) recorded again" in lines
    assert storage.record(engine.settings, "alice/kept")["slot"] == slot  # the ids its files have
    runner.restart(engine.settings, "alice/kept")
    rows = written(engine, "alice/kept", "v1", more_than=rows)["rows"]["v1"]

    # a slot that changed (here by hand) hands the files to the new ids before the next start
    st = state_mod.open(engine.settings)
    try:
        st.storage_forget("alice/kept")
        assert st.storage_assign("alice/kept", "medium", 64, storage.slots(engine.settings), prefer=7)["slot"] == 7
    finally:
        st.close()
    runner.restart(engine.settings, "alice/kept")
    now = written(engine, "alice/kept", "v1", more_than=rows)  # it writes on under its new ids
    assert now["integrity"] == "ok" and now["owner"] == 1000
    assert os.stat(storage.mount_path(engine.settings, "alice/kept") / "app.db").st_uid == \
        engine.settings["storage.uid_base"] + 7 * 65536 + 1000


def test_wrong_requests_say_what_to_do_and_change_nothing(server):
    from spacehooks import config
    from spacehooks.admin import storage as storage_admin
    from spacehooks.run import storage
    from spacehooks import state as state_mod
    from spacehooks.errors import SpaceError
    server.configure(storage={"tiers": {"small": 32, "medium": 64}})
    settings = config.load()
    st = state_mod.open(settings)
    st.ensure_space("alice/x", "/srv/alice/x.git")
    st.storage_assign("alice/x", "medium", 64, 10)
    st.close()
    with pytest.raises(SpaceError) as unknown:
        storage_admin.set_tier(settings, "alice/x", "huge")
    assert unknown.value.message == "unknown storage tier 'huge'; known: small (32 MB), medium (64 MB)"
    with pytest.raises(SpaceError) as shrink:
        storage_admin.set_tier(settings, "alice/x", "small")
    assert shrink.value.message == "alice/x has medium storage (64 MB); it cannot shrink to small (32 MB)"
    assert shrink.value.hint == ("export it (`spacehooks storage export alice/x FILE.tar`), remove it, "
                                 "set small and import the tar")
    with pytest.raises(SpaceError) as none:
        storage_admin.remove(settings, "alice/none")
    assert none.value.message == "no Space 'alice/none'"
    with pytest.raises(SpaceError) as bad_id:
        storage.image_path(settings, "../etc")
    assert bad_id.value.message == "'../etc' is not a Space id"
    server.configure(storage={"tiers": {"small": 32, "medium": 64, "vast": 10 ** 9}})
    with pytest.raises(SpaceError) as room:
        storage_admin.set_tier(config.load(), "alice/x", "vast")
    assert room.value.message.startswith("no room for 1000000000 MB of storage for alice/x: storage given to "
                                         "Spaces would reach 1000000000 MB, the disk under ")
    assert storage.record(settings, "alice/x")["tier"] == "medium"
    assert not storage.image_path(settings, "alice/x").exists()
