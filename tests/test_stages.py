"""The stage table (issue 12): every stage reachable, the final one left by no move, a sample of
legal and illegal moves, and `stages.change` on a real store refusing what the table does not allow."""
import re
from pathlib import Path

import pytest

from spacehooks import config, stages, state

ROOT = Path(__file__).resolve().parents[1]


def _reachable(start: str) -> set:
    table, seen, todo = stages.transitions(), {start}, [start]
    while todo:
        for target in table[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_every_stage_is_reachable_from_a_new_space():
    assert _reachable(stages.NEW) == set(stages.STAGES)


def test_every_stage_but_the_final_one_can_serve_again_or_go():
    for stage in stages.ALIVE:
        assert {stages.RUNNING, stages.DELETING} <= _reachable(stage), stage
    assert stages.FINAL == (stages.DELETING,)
    assert stages.transitions()[stages.DELETING] == {}


def test_error_stages_are_left_by_a_push():
    assert set(stages.ERRORS) == {"NO_APP_FILE", "CONFIG_ERROR", "BUILD_ERROR", "RUNTIME_ERROR"}
    for stage in stages.ERRORS:
        assert stages.allowed(stage, stages.BUILDING, "push")
        assert not stages.allowed(stage, stages.RUNNING_BUILDING, "push")  # nothing serves to keep


def test_the_table_is_made_of_known_stages():
    assert len(set(stages.STAGES)) == len(stages.STAGES)
    for move in stages.MOVES:
        assert move.target in stages.STAGES and set(move.sources) <= set(stages.STAGES), move
        assert move.why and move.event
    assert set(stages.STOP_EVENTS.values()) <= {m.event for m in stages.MOVES}


@pytest.mark.parametrize("source, target, event", [
    ("RUNNING", "RUNNING_BUILDING", "push"),
    ("BUILD_ERROR", "BUILDING", "push"),
    ("RUNNING", "RUNNING_APP_STARTING", "deploy"),
    ("APP_STARTING", "RUNNING", "started"),
    ("APP_STARTING", "RUNTIME_ERROR", "start failed"),
    ("RUNNING_APP_STARTING", "RUNNING", "start failed"),
    ("RUNNING", "RUNTIME_ERROR", "crashed"),
    ("RUNNING", "SLEEPING", "sleep"),
    ("SLEEPING", "APP_STARTING", "deploy"),
    ("PAUSED", "APP_STARTING", "deploy"),
    ("BUILDING", "PAUSED", "state rebuild"),
    ("RUNTIME_ERROR", "DELETING", "delete"),
    ("RUNNING", "RUNNING", "anything writes fields"),
    ("BUILDING", "WAITING_CAPACITY", "no room"),  # issue 15: built, its flavor does not fit yet
    ("SLEEPING", "WAITING_CAPACITY", "no room"),  # woken, but its room was taken meanwhile
    ("RUNNING_BUILDING", "RUNNING", "no room"),  # the new version waits; the serving one stays
    ("WAITING_CAPACITY", "APP_STARTING", "deploy"),  # room freed (admission.py)
    ("WAITING_CAPACITY", "PAUSED", "pause"),
    ("BUILDING", "RUNTIME_ERROR", "never fits"),
])
def test_legal_moves(source, target, event):
    assert stages.allowed(source, target, event)


@pytest.mark.parametrize("source, target, event", [
    ("BUILDING", "RUNNING_BUILDING", "push"),  # nothing serves: there is no "running" to keep
    ("PAUSED", "SLEEPING", "sleep"),  # a paused Space is not woken by a request, so never sleeps
    ("BUILD_ERROR", "SLEEPING", "sleep"),
    ("BUILDING", "RUNTIME_ERROR", "crashed"),  # only a serving app crashes
    ("APP_STARTING", "RUNNING_APP_STARTING", "deploy"),  # no old container beside the new one
    ("PAUSED", "CONFIG_ERROR", "config error"),  # an admin's pause stands
    ("RUNNING", "PAUSED", "state rebuild"),  # only a fresh store's rows
    ("DELETING", "RUNNING", "started"),
    ("DELETING", "BUILDING", "push"),
    ("RUNNING", "BUILD_ERROR", "push"),  # the right target for the wrong event
    ("RUNNING", "WAITING_CAPACITY", "no room"),  # a serving Space keeps serving instead
    ("WAITING_CAPACITY", "SLEEPING", "sleep"),  # nothing runs that could sleep
    ("DELETING", "WAITING_CAPACITY", "no room"),
])
def test_illegal_moves(source, target, event):
    assert not stages.allowed(source, target, event)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SPACEHOOKS_HOME", str(tmp_path / "home"))
    (tmp_path / "c.yaml").write_text(f"repo_root: {tmp_path}/git\n")
    st = state.open(config.load(tmp_path / "c.yaml", tmp_path / "home"))
    st.ensure_space("a/b", tmp_path / "git" / "a" / "b.git")
    yield st
    st.close()


def test_change_writes_a_declared_move_with_its_fields(store):
    assert stages.change(store, "a/b", stages.APP_STARTING, "deploy", error=None)
    assert stages.change(store, "a/b", stages.RUNNING, "started", port=40123, container="c1")
    space = store.get_space("a/b")
    assert (space["stage"], space["port"], space["container"]) == ("RUNNING", 40123, "c1")
    assert stages.change(store, "nobody/here", stages.RUNNING, "started") is False  # gone: nothing to write


def test_change_refuses_an_undeclared_move_and_logs_where(store, tmp_path, caplog):
    stages.change(store, "a/b", stages.PAUSED, "pause")
    with pytest.raises(stages.IllegalStageChange) as err:
        stages.change(store, "a/b", stages.SLEEPING, "sleep", port=1)
    assert store.get_space("a/b")["stage"] == "PAUSED" and store.get_space("a/b")["port"] is None
    message = str(err.value)
    assert message.startswith("a/b: sleep may not move it from PAUSED to SLEEPING; details: ")
    log_path = Path(message.rsplit("details: ", 1)[1])
    assert log_path.is_file() and log_path.is_relative_to(tmp_path / "home" / "logs" / "crash")
    text = log_path.read_text()
    assert "not in spacehooks/stages.py MOVES" in text and "test_change_refuses_an_undeclared_move" in text
    assert f"details: {log_path}" in caplog.text
    with pytest.raises(stages.IllegalStageChange):
        stages.change(store, "a/b", stages.RUNNING, "no such event")
    with pytest.raises(stages.IllegalStageChange):
        stages.change(store, "a/b", "WAITING", "pause")  # no such stage


def test_a_deleting_space_takes_no_other_stage(store):
    assert stages.change(store, "a/b", stages.DELETING, "delete")
    assert stages.change(store, "a/b", stages.BUILD_ERROR, "build failed", error="late") is False
    assert (store.get_space("a/b")["stage"], store.get_space("a/b")["error"]) == ("DELETING", None)
    assert stages.change(store, "a/b", stages.DELETING, "delete", port=None)  # the delete's own writes go on


def test_architecture_md_lists_the_table():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    listed = re.search(r"<!-- stages table: generated from spacehooks/stages.py MOVES -->\n(.*?)"
                       r"<!-- end of stages table -->", text, re.S).group(1)
    assert listed == stages.markdown_table()


def test_readme_names_every_stage():
    section = (ROOT / "README.md").read_text().split("### Stages", 1)[1].split("\n### ", 1)[0]
    assert set(re.findall(r"`([A-Z_]+)`", section)) >= set(stages.STAGES)


def test_a_sleep_racing_a_pause_is_refused_and_the_pause_stands(tmp_path, monkeypatch):
    """The sleeper picked a running Space, then an admin paused it: the sleep must not write
    SLEEPING over PAUSED (the next request would wake a paused Space). Before stages.py it did."""
    from spacehooks.run import runner
    monkeypatch.setenv("SPACEHOOKS_HOME", str(tmp_path / "home"))
    (tmp_path / "c.yaml").write_text(f"repo_root: {tmp_path}/git\n")
    settings = config.load(tmp_path / "c.yaml", tmp_path / "home")
    st = state.open(settings)
    try:
        st.ensure_space("a/b", tmp_path / "git" / "a" / "b.git")
        stages.change(st, "a/b", stages.PAUSED, "pause")
    finally:
        st.close()
    with pytest.raises(stages.IllegalStageChange, match="^a/b: sleep may not move it from PAUSED to SLEEPING"):
        runner.sleep(settings, "a/b")
    st = state.open(settings)
    try:
        assert st.get_space("a/b")["stage"] == "PAUSED"
    finally:
        st.close()
