"""The GPU path through the real Podman service, with a fake CDI vendor spec in /etc/cdi.

Podman reads only /etc/cdi and /var/run/cdi, so these tests write their specs there (files
named spacehooks-test-*) and remove them afterwards.
"""
import os
import time
import urllib.request
from pathlib import Path

import pytest
from spacehooks import cdi, config, engine, gpu, limits, runner, state
from spacehooks.errors import SpaceError
from test_gpu_cdi import fake_host

KIND = "test.spacehooks.dev/gpu"
ETC_CDI = Path("/etc/cdi")
PROBE = ("echo TESTGPU=$TESTGPU; echo VENDOR=$TESTGPU_VENDOR; echo ACCELERATOR=$ACCELERATOR; "
         "echo LD_LIBRARY_PATH=$LD_LIBRARY_PATH; ls /dev; for f in /opt/testgpu/* /usr/local/nvidia/lib64/*; "
         "do test -f $f && echo \"$f: $(cat $f)\"; done; true")


@pytest.fixture
def fake_gpus(server, podman_url, tmp_path):
    """Two fake GPUs of kind test.spacehooks.dev/gpu: a device node, an env var and a bind mount each.

    Space containers run in user namespaces, where runc cannot mknod: it bind-mounts the host's
    node found at the container's path (real NVIDIA specs name the same path on both sides).
    So the fake nodes exist on the host too, as copies of /dev/zero and /dev/null."""
    devices, nodes = [], []
    for n, node in (("0", "/dev/zero"), ("1", "/dev/null")):
        fake = Path(f"/dev/testgpu{n}")
        fake.unlink(missing_ok=True)
        os.mknod(fake, 0o020000 | 0o666, os.stat(node).st_rdev)
        fake.chmod(0o666)
        nodes.append(fake)
        info = tmp_path / f"gpu{n}.txt"
        info.write_text(f"fake gpu {n}\n")
        info.chmod(0o644)
        devices.append({"name": n, "containerEdits": {
            "env": [f"TESTGPU={n}"],
            "deviceNodes": [{"path": f"/dev/testgpu{n}", "hostPath": str(fake)}],
            "mounts": [{"hostPath": str(info), "containerPath": f"/opt/testgpu/gpu{n}.txt",
                        "options": ["ro", "nosuid", "nodev", "bind"]}]}})
    path = ETC_CDI / "spacehooks-test-gpu.json"
    cdi.write(path, {"cdiVersion": "0.5.0", "kind": KIND, "devices": devices,
                     "containerEdits": {"env": ["TESTGPU_VENDOR=yes"]}})
    server.configure(hardware={
        "test-gpu": {"cpus": 1, "memory_mb": 512, "gpus": 1, "gpu_kind": KIND},
        "test-gpu-x2": {"cpus": 1, "memory_mb": 512, "gpus": 2, "gpu_kind": KIND}},
        run={"grace_seconds": 0})
    server.settings = config.load()
    yield server
    path.unlink(missing_ok=True)
    for fake in nodes:
        fake.unlink(missing_ok=True)


@pytest.fixture
def spec_file():
    """Write a spec to /etc/cdi for one test."""
    written = []

    def write(name, data):
        path = ETC_CDI / f"spacehooks-test-{name}.json"
        cdi.write(path, data)
        written.append(path)
        return path
    yield write
    for path in written:
        path.unlink(missing_ok=True)


def run_in(settings, image, command, devices):
    """Output of `command` in a new container given `devices`; the engine's refusal as EngineError."""
    ok, out = engine.get(settings).probe(image, command, devices=tuple(devices))
    if not ok:
        raise engine.EngineError(out)
    return out


def run_probe(settings, image, devices):
    return run_in(settings, image, ["/bin/sh", "-c", PROBE], devices)


def test_container_sees_its_gpu_and_nothing_else(fake_gpus, busybox_image):
    devices = gpu.devices_for(fake_gpus.settings, "alice/one", "test-gpu")
    assert devices == [f"{KIND}=0"]
    out = run_probe(fake_gpus.settings, busybox_image, devices)
    lines = out.splitlines()
    assert "TESTGPU=0" in lines and "VENDOR=yes" in lines
    assert "testgpu0" in lines and "testgpu1" not in lines
    assert "/opt/testgpu/gpu0.txt: fake gpu 0" in lines
    assert not any(line.startswith("/opt/testgpu/gpu1.txt") for line in lines)
    assert not any(line.startswith("nvidia") for line in lines)


def test_exclusive_then_release_on_stop(fake_gpus, busybox_image):
    s = fake_gpus.settings
    assert gpu.devices_for(s, "alice/one", "test-gpu") == [f"{KIND}=0"]
    assert gpu.devices_for(s, "bob/two", "test-gpu") == [f"{KIND}=1"]
    with pytest.raises(SpaceError) as err:
        gpu.devices_for(s, "carol/three", "test-gpu")
    assert err.value.message == (f"no free GPU of kind {KIND} for carol/three: hardware test-gpu needs 1, "
                                 "0 of 2 free (in use by alice/one, bob/two)")
    st = state.open(s)
    st.ensure_space("bob/two", "/srv/bob/two.git", hardware="test-gpu")
    st.close()
    runner.stop(s, "bob/two")  # what stop and sleep do: the GPU goes back
    assert gpu.devices_for(s, "carol/three", "test-gpu") == [f"{KIND}=1"]
    assert "testgpu1" in run_probe(s, busybox_image, gpu.devices_for(s, "carol/three", "test-gpu")).split()


@pytest.mark.parametrize("version,extra,loads", [
    ("0.3.0", {}, True),
    ("0.5.0", {}, True),
    ("0.6.0", {}, False),
    ("1.0.0", {}, False),
    ("0.5.0", {"annotations": {"a": "b"}}, False),
])
def test_check_predicts_what_podman_loads(server, podman_url, busybox_image, spec_file, version, extra, loads):
    settings = config.load()
    data = {"cdiVersion": version, "kind": "check.spacehooks.dev/gpu",
            "devices": [{"name": "0", "containerEdits": {"env": ["CHECKED=yes"]}}], **extra}
    spec_file("check", data)
    assert (cdi.check(data, gpu.podman_version(settings)) == []) is loads
    if loads:
        assert "CHECKED=yes" in run_in(settings, busybox_image, ["env"], ["check.spacehooks.dev/gpu=0"])
    else:
        # through the API, create succeeds and start fails
        with pytest.raises(engine.EngineError, match="unresolvable CDI devices check.spacehooks.dev/gpu=0"):
            run_in(settings, busybox_image, ["env"], ["check.spacehooks.dev/gpu=0"])


def test_generated_spec_runs_in_podman(server, podman_url, busybox_image, spec_file, tmp_path):
    """The generator's output, with a fake driver tree (kind renamed: never shadow a real nvidia.com/gpu)."""
    root, drv = fake_host(tmp_path / "host", gpus=2)
    if not os.path.exists(root / "dev" / "nvidia0") or os.stat(root / "dev" / "nvidia0").st_rdev == 0:
        pytest.fail("mknod of fake device nodes failed: run the tests as root, as Podman needs")
    data = cdi.nvidia_spec(cdi.find_nvidia(root, drv))
    data["kind"] = "fakenvidia.spacehooks.dev/gpu"
    spec_file("nvidia", data)
    settings = config.load()
    out = run_probe(settings, busybox_image, ["fakenvidia.spacehooks.dev/gpu=1"]).splitlines()
    assert "nvidia1" in out and "nvidia0" not in out and "nvidiactl" in out and "nvidia-uvm" in out
    assert "/usr/local/nvidia/lib64/libcuda.so.1: fake libcuda" in out
    assert "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu:/usr/local/nvidia/lib64" in out
    smi = run_in(settings, busybox_image, ["/usr/local/nvidia/bin/nvidia-smi"], ["fakenvidia.spacehooks.dev/gpu=0"])
    assert smi == "fake nvidia-smi\n"


def _probe_space(settings, space_id, hardware, image):
    st = state.open(settings)
    st.ensure_space(space_id, f"/srv/{space_id}.git", hardware=hardware)
    st.update_space(space_id, stage="STOPPED", image=image, build_id=1, commit="0" * 40,
                    config={"sdk": "docker", "app_port": 7860, "title": "gpu probe"})
    st.set_variable(space_id, "APP_SCRIPT", PROBE)
    st.close()


def _page(settings, space_id):
    st = state.open(settings)
    space = st.get_space(space_id)
    st.close()
    assert space["stage"] == "RUNNING", space
    return urllib.request.urlopen(f"http://127.0.0.1:{space['port']}/", timeout=10).read().decode().splitlines()


def test_space_through_runner_gets_gpu_and_frees_it(fake_gpus, busybox_image):
    """A Space whose flavor has a GPU, started and restarted by the runner, as `hardware set` does."""
    s = fake_gpus.settings
    _probe_space(s, "gpu/app", "cpu-basic", busybox_image)
    try:
        runner.start(s, "gpu/app")
        page = _page(s, "gpu/app")
        assert "ACCELERATOR=none" in page and not any(line.startswith("testgpu") for line in page)
        limits.set_hardware(s, "gpu/app", "test-gpu-x2")
        time.sleep(0.5)
        page = _page(s, "gpu/app")
        assert "testgpu0" in page and "testgpu1" in page
        assert f"ACCELERATOR={gpu.accelerator_name(s, 'test-gpu-x2')}" in page
        assert "/opt/testgpu/gpu1.txt: fake gpu 1" in page
        assert [a["device"] for a in gpu.allocations(s)] == ["0", "1"]
        runner.stop(s, "gpu/app")
        assert gpu.allocations(s) == []
    finally:
        eng = engine.get(s)
        for container in eng.containers(f"{runner.LABEL}=gpu/app"):
            eng.remove(container.name, stop_timeout=0)
