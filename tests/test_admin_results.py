"""Admin operations return results (issue 12): plain data that an HTTP API serialises as JSON,
with nothing printed; the CLI's text comes from the same results (test_engine_admin.py)."""
import json

from spacehooks import config, results, state
from spacehooks.admin import doctor, limits, spaces as admin
from spacehooks.run import gpu
from spacehooks.gateway import sleeper


def _space(server, space_id="alice/app"):
    settings = config.load(path=server.config, home=server.home)
    st = state.open(settings)
    try:
        st.ensure_space(space_id, server.root / f"{space_id}.git", hardware="cpu-basic")
    finally:
        st.close()
    return settings


def test_space_operations_return_json_ready_results(server, capsys):
    settings = _space(server)
    changed = admin.variable_set(settings, "alice/app", "MODE", "fast")
    assert json.loads(json.dumps(results.to_json(changed))) == {
        "space_id": "alice/app", "kind": "variable", "key": "MODE", "action": "set", "restarted": None}
    assert admin.secret_set(settings, "alice/app", "TOKEN", "s3cret").restarted is None  # nothing ran to restart
    listed = {"spaces": admin.spaces(settings), "status": admin.status(settings, "alice/app"),
              "variables": admin.variable_list(settings, "alice/app"),
              "secrets": admin.secret_list(settings, "alice/app"),
              "sleep": sleeper.set_sleep_time(settings, "alice/app", 600),
              "limits": limits.show(settings, "alice/app"), "hardware": gpu.hardware_list(settings)}
    data = json.loads(json.dumps(results.to_json(listed)))
    assert data["spaces"] == [{"id": "alice/app", "stage": "BUILDING", "commit": None, "port": None,
                               "hardware": "cpu-basic"}]
    assert (data["status"]["id"], data["status"]["builds"], data["status"]["podman_down"]) == ("alice/app", [], None)
    assert data["variables"] == {"MODE": "fast"}
    assert data["secrets"] == ["TOKEN"]  # names only, never a value
    assert "s3cret" not in json.dumps(data)
    assert data["sleep"] == {"space_id": "alice/app", "seconds": 600}
    assert [row["key"] for row in data["limits"]] == ["memory_mb", "cpus", "pids"]
    assert {"name": "cpu-basic", "availability": "available"}.items() <= next(
        row for row in data["hardware"] if row["name"] == "cpu-basic").items()
    assert admin.variable_delete(settings, "alice/app", "MODE").action == "deleted"
    assert capsys.readouterr() == ("", "")  # the operations print nothing


def test_doctor_returns_its_checks_and_tells_progress(server, tmp_path):
    server.configure(podman_url=f"unix://{tmp_path}/no-podman.sock")  # the checks stop there: quick
    settings = _space(server)
    seen = []
    report = doctor.doctor(settings, progress=seen.append)
    data = json.loads(json.dumps(results.to_json(report)))
    assert data["checks"][0] == {"ok": True, "text": f"configuration {server.config} is valid", "fix": ""}
    assert data["checks"][-1]["text"].startswith("Podman service is down: ")
    assert report.problems == 1
    assert [results.to_json(c) for c in seen] == data["checks"]


def test_storage_and_capacity_results_are_json_ready(server, capsys):
    """Issue 15's operations follow the same rule: results, nothing printed."""
    from spacehooks.admin import storage as storage_admin
    from spacehooks.run import capacity
    settings = _space(server)
    st = state.open(settings)
    try:
        st.storage_assign("alice/app", "small", 20480, 4)
    finally:
        st.close()
    data = json.loads(json.dumps(results.to_json({"storage": storage_admin.listing(settings),
                                                  "room": capacity.room(settings)})))
    assert data["storage"] == [{"space_id": "alice/app", "tier": "small", "size_mb": 20480, "slot": 0,
                                "used_mb": None, "allocated_mb": 0.0}]
    assert (data["room"]["spaces"], data["room"]["waiting"], data["room"]["storage"]["used"]) == ([], [], 20480)
    assert data["room"]["memory"]["used"] == 0 and data["room"]["memory"]["free"] == data["room"]["memory"]["total"]
    assert capsys.readouterr() == ("", "")
