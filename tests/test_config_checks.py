"""Configuration is checked whole when it is loaded: a bad value stops serve/worker at start with
the file, the key and the fix, and `doctor` reports it (issue 11, item 8)."""
import subprocess

import pytest
import yaml

from conftest import VENV_BIN
from spacehooks import config
from spacehooks.run import runspec
from spacehooks.errors import SpaceError


def load(tmp_path, data):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, lambda: config.load(path, tmp_path / "home")


@pytest.mark.parametrize("data, message, fix", [
    ({"hardware": {"cpu-basic": [2, 1024]}},
     "'hardware' cpu-basic: must be a mapping of cpus, memory_mb, disk_mb, tmp_mb, gpus, gpu_kind, shared, accelerator, found [2, 1024]",
     "write each flavor as a mapping, like `cpu-basic: {cpus: 2, memory_mb: 16384}`"),
    ({"hardware": {"big": {"cpus": 2, "memroy_mb": 1}}},
     "'hardware' big: unknown field 'memroy_mb'; known: cpus, memory_mb, disk_mb, tmp_mb, gpus, gpu_kind, shared, accelerator",
     "write each flavor as a mapping, like `cpu-basic: {cpus: 2, memory_mb: 16384}`"),
    ({"hardware": {"big": {"memory_mb": "8G"}}},
     "'hardware' big.memory_mb must be an integer, found '8G'",
     "write each flavor as a mapping, like `cpu-basic: {cpus: 2, memory_mb: 16384}`"),
    ({"hardware": {"big": {"gpus": 1, "gpu_kind": "nvidia"}}},
     "'hardware' big.gpu_kind must be a CDI kind such as nvidia.com/gpu, found 'nvidia'",
     "write each flavor as a mapping, like `cpu-basic: {cpus: 2, memory_mb: 16384}`"),
    ({"gateway": {"listen": "8080"}},
     "'gateway.listen' must be HOST:PORT with a port from 1 to 65535, found '8080'", "write it like 127.0.0.1:8080"),
    ({"gateway": {"listen": "0.0.0.0:99999"}},
     "'gateway.listen' must be HOST:PORT with a port from 1 to 65535, found '0.0.0.0:99999'",
     "write it like 127.0.0.1:8080"),
    ({"run": {"port_range": [30000, 20000]}},
     "'run.port_range' must be [FIRST, LAST], two ports with 1024 <= FIRST <= LAST <= 65535, found [30000, 20000]",
     "write it like [20000, 29999]"),
    ({"run": {"port_range": [20000]}},
     "'run.port_range' must be [FIRST, LAST], two ports with 1024 <= FIRST <= LAST <= 65535, found [20000]",
     "write it like [20000, 29999]"),
    ({"python_versions": {3.11: "localhost/spacehooks/python:3.11"}},
     "'python_versions' has 3.11: versions are written MAJOR.MINOR as a quoted string",
     'map each version to its base image, like {"3.11": "localhost/spacehooks/python:3.11"}'),
    ({"python_versions": {"3.12": ""}, "default_python_version": "3.12"},
     "'python_versions' 3.12: the base image must be a non-empty string, found ''",
     'map each version to its base image, like {"3.11": "localhost/spacehooks/python:3.11"}'),
    ({"python_versions": {"3.12": "python:3.12-slim"}, "python_version_fallback": "refuse"},
     "'default_python_version' is '3.11', which python_versions does not provide (3.12)",
     "add it to python_versions or pick one of those"),
    ({"run": {"default_hardware": "cpu-huge"}},
     "'run.default_hardware' names no flavor: 'cpu-huge'",
     "pick one of a100-large, a10g-large, a10g-largex2, a10g-largex4, a10g-small, cpu-basic, cpu-upgrade, "
     "l4x1, l4x4, t4-medium, t4-small or define it under `hardware:`"),
    ({"run": {"memory_mb": 0}}, "'run.memory_mb' must be at least 16, found 0", "set the memory in MB, like 16384"),
    ({"build": {"concurrency": 0}}, "'build.concurrency' must be at least 1, found 0", "set 1 or more"),
    ({"engine": "docker"}, "'engine' must be podman or kubernetes, found 'docker'", "set engine: podman"),
    ({"podman_url": "http://localhost:8888"}, "'podman_url' must be a unix:// socket URL, found 'http://localhost:8888'",
     "write it like unix:///run/spacehooks/podman.sock"),
    ({"storage": {"tiers": {"small": 8}}},
     "'storage.tiers' small: the size must be a whole number of MB, at least 16, found 8",
     "map each tier to its size in MB, like {small: 20480}"),
    ({"storage": {"tiers": {"../x": 20480}}}, "'storage.tiers' has a tier named '../x': use letters, digits, - _",
     "map each tier to its size in MB, like {small: 20480}"),
    ({"storage": {"uid_base": 1000}}, "'storage.uid_base' must be at least 65536, found 1000",
     "set a host uid above every account's, like 1073741824"),
    ({"capacity": {"overcommit": {"disk": 2}}}, "'capacity.overcommit' has unknown key 'disk'; known: memory, cpus, storage",
     "write it like {memory: 1.0, cpus: 4.0, storage: 1.0}"),
    ({"capacity": {"overcommit": {"memory": 0}}}, "'capacity.overcommit' memory must be a number above 0, found 0",
     "write it like {memory: 1.0, cpus: 4.0, storage: 1.0}"),
    ({"capacity": {"memory_mb": -1}}, "'capacity.memory_mb' must be at least 0, found -1",
     "set 0 (the machine's memory) or a size in MB"),
])
def test_a_bad_value_names_file_key_and_fix(tmp_path, data, message, fix):
    path, loader = load(tmp_path, data)
    with pytest.raises(SpaceError) as err:
        loader()
    assert err.value.message == f"{path}: {message}"
    assert err.value.hint == fix


def test_good_structured_values_load(tmp_path):
    _, loader = load(tmp_path, {
        "hardware": {"gpu-x": {"cpus": 0.5, "memory_mb": 512, "gpus": 1, "gpu_kind": "nvidia.com/gpu", "shared": True}},
        "gateway": {"listen": "[::1]:8080"}, "run": {"port_range": [20000, 20000], "default_hardware": "gpu-x"},
        "python_versions": {"3.10": "python:3.10-slim", "3.11": "localhost/spacehooks/python:3.11"}})
    settings = loader()
    assert settings.flavors["gpu-x"]["shared"] is True


def test_run_memory_and_cpus_size_the_default_flavor(tmp_path):
    # before: cpu-basic carried the Hub's 16 GB / 2 CPUs, so run.memory_mb: 512 had no effect
    _, loader = load(tmp_path, {"run": {"memory_mb": 512, "cpus": 0.5}})
    settings = loader()
    assert runspec.limits_for(settings, {"hardware": None}) == {"memory_mb": 512, "cpus": 0.5, "pids": 1024, "gpus": 0,
                                                                "disk_mb": 4096, "tmp_mb": 1024}
    assert settings.flavors["cpu-upgrade"] == {"cpus": 8, "memory_mb": 32768, "disk_mb": 8192, "gpus": 0}
    # an admin's own cpu-basic entry still wins over run.*
    _, loader = load(tmp_path, {"run": {"memory_mb": 512}, "hardware": {"cpu-basic": {"memory_mb": 2048}}})
    assert runspec.limits_for(loader(), {"hardware": "cpu-basic"})["memory_mb"] == 2048


def run_cli(tmp_path, path, *args):
    env = {"SPACEHOOKS_CONFIG": str(path), "SPACEHOOKS_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(VENV_BIN / "spacehooks"), *args], env=env, text=True, timeout=60,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_doctor_reports_a_flavor_written_as_a_list(tmp_path):
    # before: "all checks passed", then every deploy failed with an internal error
    path, _ = load(tmp_path, {"hardware": {"cpu-basic": [2, 1024]}})
    result = run_cli(tmp_path, path, "doctor")
    assert result.returncode == 1
    assert result.stdout == (
        f"PROBLEM  configuration: {path}: 'hardware' cpu-basic: must be a mapping of cpus, memory_mb, disk_mb, "
        "tmp_mb, gpus, gpu_kind, shared, accelerator, found [2, 1024]\n"
        "  fix: write each flavor as a mapping, like `cpu-basic: {cpus: 2, memory_mb: 16384}`\n"
        "1 problem(s) found (fix the configuration first: the other checks need it)\n")


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_worker_and_serve_stop_at_start_on_a_bad_file(tmp_path, command):
    path, _ = load(tmp_path, {"gateway": {"listen": "localhost"}})
    result = run_cli(tmp_path, path, command)
    assert result.returncode == 1
    assert result.stdout == (f"Error: {path}: 'gateway.listen' must be HOST:PORT with a port from 1 to 65535, "
                             "found 'localhost'\n  fix: write it like 127.0.0.1:8080\n")
