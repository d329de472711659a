"""The runner's blue-green decisions against an in-memory engine (tests/fake_engine.py).

What a real container does is the business of test_engine_docker and the other Podman tests
(the tests of record); here the engine's answers are scripted, so each decision is checked
on its own and fast: the old version serves until the new one answers, a new version that
crashes or is killed for memory never replaces a serving one, and the run spec is plain data
carrying every fence."""
import time

import pytest

import spacehooks.engine
from fake_engine import FakeEngine
from spacehooks import config, gpu, netfence, runner, runspec, secretstore, state

IMAGE = "localhost/spacehooks/space/alice/app:b1"
CONFIG = {"sdk": "docker", "app_port": 7860, "title": "app"}


@pytest.fixture
def fake(server, monkeypatch):
    server.configure(run={"grace_seconds": 60}, hardware={
        "fake-gpu": {"cpus": 1, "memory_mb": 512, "gpus": 1, "gpu_kind": "fake.spacehooks.dev/gpu"}})
    eng = FakeEngine()
    monkeypatch.setattr(spacehooks.engine, "get", lambda settings: eng)
    # the host firewall is netfence's own test's business (test_fence_network), not the runner's
    monkeypatch.setattr(netfence, "apply", lambda settings: None)
    eng.settings = config.load()
    st = state.open(eng.settings)
    st.ensure_space("alice/app", str(server.root / "alice" / "app.git"))
    st.close()
    yield eng
    eng.close()


def space(settings) -> dict:
    st = state.open(settings)
    try:
        return st.get_space("alice/app")
    finally:
        st.close()


def deploy(fake, build_id: int) -> dict:
    runner.deploy(fake.settings, "alice/app", IMAGE.replace(":b1", f":b{build_id}"), build_id, f"{build_id}" * 40, CONFIG)
    return space(fake.settings)


def test_first_deploy_runs_and_serves(fake):
    s = deploy(fake, 1)
    assert (s["stage"], s["container"], s["error"]) == ("RUNNING", fake.specs[0].name, None)
    assert s["port"] == fake.specs[0].host_port
    assert fake.state(s["container"]).running


def test_new_version_replaces_the_old_only_after_it_answers(fake):
    old = deploy(fake, 1)["container"]
    new = deploy(fake, 2)
    assert new["stage"] == "RUNNING" and new["container"] == fake.specs[1].name != old
    assert new["build_id"] == 2
    # the old one keeps running through the grace period, then reap removes it
    assert fake.state(old).running and ("remove", old) not in fake.calls
    st = state.open(fake.settings)
    try:
        assert st.due_retired(time.time() + 61) == [old]
        st.retire("alice/app", old, time.time() - 1)  # grace over
        runner.reap(fake.settings, st)
    finally:
        st.close()
    assert fake.state(old) is None and fake.state(new["container"]).running


def test_a_crashing_new_version_leaves_the_old_one_serving(fake):
    old = deploy(fake, 1)
    fake.outcomes.append(("exit", 3, "Traceback\nValueError: boom\n"))
    s = deploy(fake, 2)
    assert (s["stage"], s["container"], s["port"], s["build_id"]) == ("RUNNING", old["container"], old["port"], 1)
    assert s["error"] == ("build #2 did not start (RUNTIME_ERROR): the app exited with code 3\n"
                          "log tail:\nTraceback\nValueError: boom")
    assert ("remove", fake.specs[1].name) in fake.calls and fake.state(fake.specs[1].name) is None


def test_a_first_version_killed_for_memory_is_a_runtime_error(fake):
    fake.outcomes.append(("oom", 0, "allocating\n"))
    s = deploy(fake, 1)
    assert (s["stage"], s["container"], s["port"]) == ("RUNTIME_ERROR", None, None)
    assert s["error"] == ("the app was killed for using more memory than its limit (memory limit reached)\n"
                          "log tail:\nallocating")
    assert fake.containers_ == {}


def test_sleep_removes_the_container_and_wake_starts_a_new_one(fake):
    first = deploy(fake, 1)["container"]
    runner.sleep(fake.settings, "alice/app")
    assert space(fake.settings)["stage"] == "SLEEPING" and fake.state(first) is None
    port = runner.wake(fake.settings, "alice/app")
    s = space(fake.settings)
    assert (s["stage"], s["port"]) == ("RUNNING", port) and s["container"] == fake.specs[1].name != first


def test_the_run_spec_is_plain_data_with_every_fence(fake):
    secretstore.write_secret(fake.settings.home, "alice/app", "TOKEN", "s3cret")
    st = state.open(fake.settings)
    st.set_variable("alice/app", "GREETING", "hi")
    st.close()
    deploy(fake, 1)
    spec = fake.specs[0]
    assert spec.secrets == {"TOKEN": "s3cret"} and "TOKEN" not in spec.env and spec.env["GREETING"] == "hi"
    assert (spec.user, spec.read_only_root, spec.no_new_privileges, spec.cap_drop, spec.userns_auto, spec.init) == \
        ("1000", True, True, ("ALL",), True, True)
    assert (spec.host_ip, spec.app_port, spec.restart) == ("127.0.0.1", 7860, "no")
    assert spec.network == netfence.network_name(fake.settings, "alice/app")
    assert spec.labels[runspec.LABEL] == "alice/app" and spec.labels["spacehooks.build"] == "1"
    assert spec.gpu_devices == () and spec.gpus == 0


def test_the_run_spec_allocates_no_gpu(fake):
    """GPUs are the runner's to allocate (gpu.devices_for), before it asks for the spec."""
    st = state.open(fake.settings)
    try:
        st.update_space("alice/app", hardware="fake-gpu")
        spec = runspec.spec(fake.settings, st, st.get_space("alice/app"), IMAGE, CONFIG, 1, 20000)
    finally:
        st.close()
    assert (spec.gpus, spec.gpu_kind, spec.gpu_devices) == (1, "fake.spacehooks.dev/gpu", ())
    assert gpu.allocations(fake.settings) == []


def test_the_engine_setting_picks_the_engine(server, monkeypatch):
    from spacehooks.engine import base
    from spacehooks.engine.podman import PodmanEngine
    from spacehooks.errors import SpaceError
    assert isinstance(base.get(config.load()), PodmanEngine)
    server.configure(engine="kubernetes")
    # as on a server whose spacehooks has no Kubernetes engine
    monkeypatch.setitem(base.ENGINES, "kubernetes", "spacehooks.engine.kubernetes_absent")
    with pytest.raises(SpaceError) as err:
        base.get(config.load())
    assert err.value.format_message() == (
        "engine 'kubernetes' is not installed (spacehooks.engine.kubernetes_absent is missing)\n"
        "  fix: set engine to podman, or install a spacehooks that has it")
