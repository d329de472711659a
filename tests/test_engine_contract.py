"""The engine interface's promises, held by the Podman engine (the real service) and by the
in-memory FakeEngine alike: a FakeEngine that drifted from the real one would make the unit
tests built on it (test_runner_bluegreen) prove nothing."""
import time

import pytest

from fake_engine import FakeEngine
from spacehooks import config, engine, netfence, runspec
from spacehooks.engine import ImageInfo, RunSpec

BASE = "localhost/spacehooks/python:3.11"


@pytest.fixture(params=["podman", "fake"])
def eng(request, server):
    settings = config.load()
    if request.param == "fake":
        fake = FakeEngine()
        fake.images_[BASE] = ImageInfo(id="1" * 64, tags=(BASE,), labels={"io.spacehooks.python": "3.11"})
        fake.outcomes.append(("exit", 0, ""))
        yield fake, settings
        fake.close()
        return
    request.getfixturevalue("base_image")
    real = engine.get(settings)
    yield real, settings
    for state in real.containers(f"{runspec.LABEL}=contract/{server.home.name}"):
        real.remove(state.name, stop_timeout=0)


def spec(settings, space_id: str) -> RunSpec:
    # the base image's command (python3, no input) ends at once with code 0
    return RunSpec(name=f"spacehooks-contract-{time.time_ns() % 10**9}", image=BASE, space_id=space_id,
                   labels={runspec.LABEL: space_id, "spacehooks.build": "1"}, env={"A": "1"}, secrets={"B": "2"},
                   app_port=7860, host_port=29999, network=netfence.network_name(settings, space_id), memory_mb=256,
                   cpus=0.5, pids=64, nofile=256, disk_mb=16, tmp_mb=16, log_bytes=65536)


def test_what_is_not_there(eng):
    e, _ = eng
    assert e.state("spacehooks-contract-none") is None
    e.remove("spacehooks-contract-none")  # gone already is fine
    assert e.log_tail("spacehooks-contract-none", 5) == ""
    assert list(e.follow_logs("spacehooks-contract-none", follow=False)) == []
    assert e.image("localhost/spacehooks/contract-none:1") is None
    assert not e.image_exists("localhost/spacehooks/contract-none:1")
    with pytest.raises(engine.NotFound):
        e.remove_image("localhost/spacehooks/contract-none:1")


def test_images_and_their_labels(eng):
    e, _ = eng
    assert e.image_exists(BASE) and e.image(BASE).labels["io.spacehooks.python"] == "3.11"
    assert BASE in [tag for image in e.images("localhost/spacehooks/python") for tag in image.tags]


def test_a_run_container_is_seen_by_label_until_removed(eng, server):
    e, settings = eng
    space_id = f"contract/{server.home.name}"
    if e.name == "podman":  # the Space's network, as the runner makes it first
        netfence.prepare(settings, space_id)
    name = e.run(spec(settings, space_id))
    deadline = time.monotonic() + 60
    while (state := e.state(name)).running and time.monotonic() < deadline:
        time.sleep(0.2)
    # Podman 4.3 says "stopped" for a while before "exited"; the runner takes both as ended
    assert state.status in ("exited", "stopped")
    assert (state.name, state.running, state.exit_code, state.oom_killed) == (name, False, 0, False)
    assert state.labels[runspec.LABEL] == space_id and state.host_port == 29999
    label = f"{runspec.LABEL}={space_id}"
    assert list(e.states(label)) == [name] and e.states(label)[name].exit_code == 0
    assert [c.name for c in e.containers(label)] == [name]
    e.remove(name)
    assert e.state(name) is None and e.states(label) == {}
