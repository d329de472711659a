"""GPU allocation and flavors, against specs in a temp CDI folder (Podman's version from the service)."""
import json
import subprocess
import sys

import pytest

from spacehooks import config, state
from spacehooks.run import gpu
from spacehooks.errors import SpaceError

KIND = "test.spacehooks.dev/gpu"
FLAVORS = {
    "test-gpu": {"cpus": 1, "memory_mb": 512, "gpus": 1, "gpu_kind": KIND},
    "test-gpu-x2": {"cpus": 1, "memory_mb": 512, "gpus": 2, "gpu_kind": KIND},
    "test-gpu-x5": {"cpus": 1, "memory_mb": 512, "gpus": 5, "gpu_kind": KIND},
    "test-shared": {"cpus": 1, "memory_mb": 512, "gpus": 1, "gpu_kind": KIND, "shared": True},
    "test-npu": {"cpus": 1, "memory_mb": 512, "gpus": 1, "gpu_kind": "other.dev/npu", "accelerator": "npu"},
}


@pytest.fixture
def host(server, podman_url, tmp_path):
    """Settings whose CDI folder holds a spec with three devices (and the `all` alias)."""
    cdi_dir = tmp_path / "cdi"
    cdi_dir.mkdir()
    devices = [{"name": n, "containerEdits": {"env": [f"G={n}"]}} for n in ("0", "1", "2", "all")]
    (cdi_dir / "test.json").write_text(json.dumps({"cdiVersion": "0.5.0", "kind": KIND, "devices": devices}))
    server.configure(gpu={"cdi_dirs": [str(cdi_dir)]}, hardware=FLAVORS)
    server.cdi_dir = cdi_dir
    server.settings = config.load()
    return server


def cli(*args):
    return subprocess.run([sys.executable, "-m", "spacehooks", *args], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_cpu_flavor_gets_nothing(host):
    assert gpu.devices_for(host.settings, "a/cpu", "cpu-basic") == []
    assert gpu.accelerator_name(host.settings, "cpu-basic") == "none"
    assert gpu.accelerator_name(host.settings, "t4-small") == "cuda"
    assert gpu.accelerator_name(host.settings, "test-npu") == "npu"


def test_exclusive_allocation_and_refusal(host):
    s = host.settings
    assert gpu.devices_for(s, "a/one", "test-gpu") == [f"{KIND}=0"]
    assert gpu.devices_for(s, "a/one", "test-gpu") == [f"{KIND}=0"]  # a restart keeps its GPU
    assert gpu.devices_for(s, "b/two", "test-gpu-x2") == [f"{KIND}=1", f"{KIND}=2"]
    with pytest.raises(SpaceError) as err:
        gpu.devices_for(s, "c/three", "test-gpu")
    assert err.value.format_message() == (
        f"no free GPU of kind {KIND} for c/three: hardware test-gpu needs 1, 0 of 3 free (in use by a/one, b/two)\n"
        "  fix: stop one of those Spaces or move it to a CPU flavor (`spacehooks hardware set`), then try again")
    gpu.release(s, "a/one")
    assert gpu.devices_for(s, "c/three", "test-gpu") == [f"{KIND}=0"]


def test_flavor_change_moves_allocation(host):
    s = host.settings
    assert gpu.devices_for(s, "a/one", "test-gpu") == [f"{KIND}=0"]
    assert gpu.devices_for(s, "a/one", "test-gpu-x2") == [f"{KIND}=0", f"{KIND}=1"]
    assert gpu.devices_for(s, "a/one", "cpu-basic") == []
    assert gpu.allocations(s) == []


def test_shared_flavor(host):
    s = host.settings
    assert gpu.devices_for(s, "x/excl", "test-gpu-x2") == [f"{KIND}=0", f"{KIND}=1"]
    assert gpu.devices_for(s, "a/s1", "test-shared") == [f"{KIND}=2"]
    assert gpu.devices_for(s, "a/s2", "test-shared") == [f"{KIND}=2"]
    with pytest.raises(SpaceError) as err:
        gpu.devices_for(s, "y/excl", "test-gpu")
    assert err.value.message.startswith(f"no free GPU of kind {KIND} for y/excl: hardware test-gpu needs 1, "
                                        "0 of 3 free (in use by a/s1, a/s2, x/excl)")


def test_no_such_gpu_and_too_few(host):
    with pytest.raises(SpaceError) as err:
        gpu.devices_for(host.settings, "a/one", "test-npu")
    assert err.value.format_message() == (
        "hardware test-npu needs 1 GPU of kind other.dev/npu, and this host has none\n"
        "  fix: install the vendor's CDI spec in /etc/cdi (NVIDIA: `spacehooks gpu cdi-generate`); "
        "`spacehooks gpu list` shows what Podman can use")
    with pytest.raises(SpaceError) as err:
        gpu.devices_for(host.settings, "a/one", "test-gpu-x5")
    assert err.value.message == f"hardware test-gpu-x5 needs 5 GPUs of kind {KIND}; this host has 3"
    with pytest.raises(SpaceError) as err:
        gpu.devices_for(host.settings, "a/one", "nope")
    assert err.value.message.startswith("unknown hardware flavor 'nope'; known: a100-large, ")


def test_allocation_survives_restart_of_spacehooks(host):
    gpu.devices_for(host.settings, "a/one", "test-gpu")
    # a new process, a new connection: what the worker or gateway sees after a restart
    result = cli("gpu", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{host.cdi_dir / 'test.json'}: {KIND} (cdiVersion 0.5.0), loaded by Podman {gpu.podman_version(host.settings)}\n"
        f"  {KIND}=0  in use by a/one\n  {KIND}=1  free\n  {KIND}=2  free\n  {KIND}=all  alias of every device\n")
    reopened = config.load()
    assert gpu.allocations(reopened) == [{"kind": KIND, "device": "0", "space_id": "a/one", "shared": 0}]


def test_hardware_list(host):
    gpu.devices_for(host.settings, "a/one", "test-gpu-x2")
    result = cli("hardware", "list")
    assert result.returncode == 0, result.stderr
    flavors, _, used = result.stdout.partition("\n\n")  # then what is used and free (capacity)
    status = {line.split()[0]: line.split("  ")[-1].strip() for line in flavors.splitlines()[1:]}
    assert used.splitlines()[0].startswith("memory   used 0 MB of ")
    assert status["cpu-basic"] == "available"
    assert status["t4-small"] == "no GPU of kind nvidia.com/gpu on this host"
    assert status["test-gpu"] == "1 of 3 free"
    assert status["test-gpu-x2"] == "busy: 1 of 3 free"
    assert status["test-gpu-x5"] == f"needs 5 GPUs of kind {KIND}, this host has 3"
    assert status["test-shared"] == "available (shared, 3 GPUs)"


def test_too_new_spec_is_reported(host):
    (host.cdi_dir / "new.yaml").write_text(
        "cdiVersion: 0.6.0\nkind: new.spacehooks.dev/gpu\ndevices:\n- name: 0\n  containerEdits: {env: [A=1]}\n")
    version = gpu.podman_version(host.settings)
    result = cli("gpu", "list")
    assert result.returncode == 0, result.stderr
    assert (f"{host.cdi_dir / 'new.yaml'}: new.spacehooks.dev/gpu (cdiVersion 0.6.0), NOT loaded by Podman {version}\n"
            f"  problem: cdiVersion 0.6.0 is newer than Podman {version} loads (at most 0.5.0); "
            f"Podman would only say \"unresolvable CDI devices\"\n"
            "  fix: write the spec with cdiVersion 0.5.0 (for NVIDIA GPUs: `spacehooks gpu cdi-generate`), "
            "or install a newer Podman\n"
            "  new.spacehooks.dev/gpu=0  unusable\n") in result.stdout


def test_hardware_set(host):
    st = state.open(host.settings)
    for space_id in ("a/one", "b/two"):
        st.ensure_space(space_id, f"/srv/{space_id}.git", hardware="cpu-basic")
        st.update_space(space_id, stage="STOPPED")
    st.close()
    result = cli("hardware", "set", "a/one", "test-gpu-x2")
    assert (result.returncode, result.stdout) == (0, "a/one: hardware test-gpu-x2; applies when it next starts (now STOPPED)\n")
    gpu.devices_for(host.settings, "a/one", "test-gpu-x2")
    gpu.devices_for(host.settings, "c/three", "test-gpu")
    result = cli("hardware", "set", "b/two", "test-gpu")
    assert (result.returncode, result.stderr) == (1, (
        f"Error: no free GPU of kind {KIND} for b/two: hardware test-gpu needs 1, 0 of 3 free (in use by a/one, c/three)\n"
        "  fix: stop one of those Spaces or move it to a CPU flavor (`spacehooks hardware set`), then try again\n"))
    result = cli("hardware", "set", "a/one", "cpu-upgrade")  # frees its GPUs for b/two
    assert result.returncode == 0, result.stderr
    assert [r["space_id"] for r in gpu.allocations(host.settings)] == ["c/three"]
    assert cli("hardware", "set", "b/two", "test-gpu").returncode == 0
    st = state.open(host.settings)
    assert st.get_space("b/two")["hardware"] == "test-gpu"
    assert st.get_space("a/one")["hardware"] == "cpu-upgrade"
    st.close()
    result = cli("hardware", "set", "nobody/here", "test-gpu")
    assert (result.returncode, result.stderr) == (
        1, "Error: no Space 'nobody/here'\n  fix: give it as owner/name, as its repository path\n")


def test_a_space_waits_for_gpus_held_by_others(host):
    """Capacity (issue 15): GPUs held by other Spaces make a start wait, saying for what;
    more GPUs than the host has is no wait but the allocation's own error at start."""
    from spacehooks.run import capacity
    s = host.settings
    gpu.devices_for(s, "a/one", "test-gpu-x2")
    st = state.open(s)
    try:
        st.ensure_space("b/two", "/srv/b/two.git", hardware="test-gpu-x2")
        st.ensure_space("c/three", "/srv/c/three.git", hardware="test-gpu")
        st.ensure_space("d/four", "/srv/d/four.git", hardware="test-gpu-x5")
        assert capacity.shortfall(s, st, st.get_space("b/two")) == (
            f"waiting for 2 GPU(s) of kind {KIND}: 1 of 3 free (in use by a/one)")
        assert capacity.shortfall(s, st, st.get_space("c/three")) is None
        assert capacity.shortfall(s, st, st.get_space("d/four")) is None
    finally:
        st.close()
    gpu.release(s, "a/one")
    st = state.open(s)
    try:
        assert capacity.shortfall(s, st, st.get_space("b/two")) is None
    finally:
        st.close()
