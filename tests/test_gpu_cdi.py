"""CDI spec checks and the NVIDIA spec generator, without Podman (fake device trees)."""
import json
import os
import subprocess
import sys

import pytest

from spacehooks.engine import cdi
from spacehooks.errors import SpaceError


def spec(version="0.5.0", kind="test.spacehooks.dev/gpu", **extra):
    data = {"cdiVersion": version, "kind": kind,
            "devices": [{"name": "0", "containerEdits": {"env": ["A=1"]}}]}
    data.update(extra)
    return data


def messages(problems):
    return [p.message for p in problems]


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0"])
def test_versions_podman_43_loads(version):
    assert cdi.check(spec(version), "4.3.1") == []


@pytest.mark.parametrize("version", ["0.6.0", "0.7.0", "0.8.0", "1.0.0"])
def test_too_new_version_named_with_fix(version):
    problems = cdi.check(spec(version), "4.3.1")
    assert messages(problems) == [
        f"cdiVersion {version} is newer than Podman 4.3.1 loads (at most 0.5.0); "
        f"Podman would only say \"unresolvable CDI devices\""]
    assert problems[0].fix == ("write the spec with cdiVersion 0.5.0 (for NVIDIA GPUs: "
                               "`spacehooks gpu cdi-generate`), or install a newer Podman")


def test_newer_podman_loads_newer_specs():
    assert cdi.max_cdi_version("4.3.1") == "0.5.0"
    assert cdi.max_cdi_version("4.9.3") == "0.6.0"
    assert cdi.max_cdi_version("5.0.0-rc1") == "0.7.0"
    assert cdi.max_cdi_version("5.4.2") == "0.8.0"
    assert cdi.check(spec("0.6.0", annotations={"a": "b"}), "4.9.3") == []


def test_unknown_and_too_new_fields():
    data = spec(annotations={"a": "b"})
    data["devices"][0]["containerEdits"]["additionalGids"] = [5]
    data["devices"][0]["containerEdits"]["mounts"] = [{"hostPath": "/a", "containerPath": "/b", "bogus": 1}]
    assert messages(cdi.check(data, "4.3.1")) == [
        "field `annotations` is not known to Podman 4.3.1's CDI loader, which then rejects the whole "
        "spec (it needs cdiVersion 0.6.0)",
        "field `devices[0].containerEdits.additionalGids` is not known to Podman 4.3.1's CDI loader, "
        "which then rejects the whole spec (it needs cdiVersion 0.7.0)",
        "field `devices[0].containerEdits.mounts[0].bogus` is not known to Podman 4.3.1's CDI loader, "
        "which then rejects the whole spec",
    ]


def test_known_fields_pass():
    edits = {"env": ["A=1"], "hooks": [{"hookName": "createContainer", "path": "/bin/true", "args": [],
                                         "env": [], "timeout": 5}],
             "deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/zero", "type": "c", "major": 1, "minor": 5,
                              "fileMode": 438, "permissions": "rw", "uid": 0, "gid": 0}],
             "mounts": [{"hostPath": "/a", "containerPath": "/b", "options": ["ro"], "type": "bind"}]}
    assert cdi.check(spec(containerEdits=edits), "4.3.1") == []


@pytest.mark.parametrize("kind", ["nvidia.com", "nvidia.com/g", "nvidia.com/gpu.x", "-x.com/gpu", 7])
def test_bad_kinds(kind):
    assert messages(cdi.check(spec(kind=kind), "4.3.1")) == [
        f"kind {kind!r} is not `vendor.example/class` (class: letters, digits, - and _, at least 2 characters)"]


def test_bad_device_name_and_no_devices():
    data = spec()
    data["devices"][0]["name"] = "-x"
    assert messages(cdi.check(data, "4.3.1")) == ["device name '-x' is not valid (letters, digits, _ . : -)"]
    assert messages(cdi.check(spec(devices=[]), "4.3.1")) == ["no devices listed"]
    assert messages(cdi.check(["x"], "4.3.1")) == [
        "not a CDI spec (expected a mapping with cdiVersion, kind and devices)"]


def test_read_dirs_yaml_json_broken_and_conflicts(tmp_path):
    etc, run = tmp_path / "etc", tmp_path / "run"
    etc.mkdir()
    run.mkdir()
    (etc / "a.yaml").write_text("cdiVersion: 0.5.0\nkind: test.spacehooks.dev/gpu\ndevices:\n"
                                "- name: 0\n  containerEdits: {env: [A=1]}\n- name: all\n"
                                "  containerEdits: {env: [A=1]}\n")
    (etc / "b.json").write_text(json.dumps(spec(devices=[{"name": "0", "containerEdits": {}}])))
    (etc / "c.json").write_text("{broken")
    (etc / "notes.txt").write_text("ignored")
    (run / "d.json").write_text(json.dumps(spec(kind="other.dev/npu", devices=[
        {"name": n, "containerEdits": {}} for n in ("10", "2", "1")])))
    (run / "e.json").write_text(json.dumps(spec("0.6.0", kind="new.dev/gpu")))
    specs = cdi.read_dirs([etc, run, tmp_path / "missing"], "4.3.1")
    assert [s.path.name for s in specs] == ["a.yaml", "b.json", "c.json", "d.json", "e.json"]
    a, b, c, d, e = specs
    assert a.devices == ["0", "all"]
    assert messages(a.problems) == [f"device test.spacehooks.dev/gpu=0 is also defined in {etc / 'b.json'}; "
                                    f"Podman then refuses both"]
    assert messages(b.problems) == [f"device test.spacehooks.dev/gpu=0 is also defined in {etc / 'a.yaml'}; "
                                    f"Podman then refuses both"]
    assert c.problems[0].message.startswith("cannot be read: ")
    assert not e.loadable
    assert cdi.inventory(specs) == {"other.dev/npu": ["1", "2", "10"]}


def test_conflict_across_folders_is_an_override(tmp_path):
    for folder in ("etc", "run"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.json").write_text(json.dumps(spec()))
    specs = cdi.read_dirs([tmp_path / "etc", tmp_path / "run"], "4.3.1")
    assert all(s.loadable for s in specs)
    assert cdi.inventory(specs) == {"test.spacehooks.dev/gpu": ["0"]}


# --- generator ------------------------------------------------------------------------------

def fake_host(root, gpus=2, nodes=True, libcuda=True):
    """A fake /dev and driver tree; device nodes are mknod copies of /dev/null where allowed."""
    dev = root / "dev"
    dev.mkdir(parents=True)
    names = [f"nvidia{i}" for i in range(gpus)] + (["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"] if nodes else [])
    for name in names:
        try:
            os.mknod(dev / name, 0o666 | 0o020000, os.makedev(1, 3))
        except PermissionError:
            (dev / name).write_text("")
    (dev / "nvidia-caps").mkdir()
    drv = root / "drv"
    lib64 = drv / "usr/local/nvidia/lib64"
    lib64.mkdir(parents=True)
    (drv / "usr/local/nvidia/bin").mkdir(parents=True)
    (drv / "usr/local/nvidia/bin/nvidia-smi").write_text("#!/bin/sh\necho fake nvidia-smi\n")
    (drv / "usr/local/nvidia/bin/nvidia-smi").chmod(0o755)
    (drv / "usr/local/nvidia/bin/unrelated").write_text("")
    if libcuda:
        (lib64 / "libcuda.so.550.54").write_text("fake libcuda")
        os.symlink("libcuda.so.550.54", lib64 / "libcuda.so.1")
    (lib64 / "libnvidia-ml.so.550.54").write_text("fake nvml")
    (lib64 / "libother.so").write_text("")
    multi = drv / "usr/lib/x86_64-linux-gnu"
    multi.mkdir(parents=True)
    (multi / "libnvidia-ptxjitcompiler.so.550.54").write_text("")
    os.symlink("usr/lib", drv / "lib")  # merged /usr: the same files must be mounted once
    return root, drv


def test_generated_spec_shape(tmp_path):
    root, drv = fake_host(tmp_path)
    host = cdi.find_nvidia(root, drv)
    data = cdi.nvidia_spec(host)
    ro = ["ro", "nosuid", "nodev", "bind"]
    dev = tmp_path / "dev"
    assert data == {
        "cdiVersion": "0.5.0",
        "kind": "nvidia.com/gpu",
        "devices": [
            {"name": "0", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0", "hostPath": f"{dev}/nvidia0"}]}},
            {"name": "1", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia1", "hostPath": f"{dev}/nvidia1"}]}},
            {"name": "all", "containerEdits": {"deviceNodes": [
                {"path": "/dev/nvidia0", "hostPath": f"{dev}/nvidia0"},
                {"path": "/dev/nvidia1", "hostPath": f"{dev}/nvidia1"}]}},
        ],
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void",
                    "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu:/usr/local/nvidia/lib64"],
            "deviceNodes": [{"path": f"/dev/{n}", "hostPath": f"{dev}/{n}"}
                            for n in ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")],
            "mounts": [
                {"hostPath": f"{drv}/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.550.54",
                 "containerPath": "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.550.54", "options": ro},
                {"hostPath": f"{drv}/usr/local/nvidia/lib64/libcuda.so.550.54",
                 "containerPath": "/usr/local/nvidia/lib64/libcuda.so.1", "options": ro},
                {"hostPath": f"{drv}/usr/local/nvidia/lib64/libcuda.so.550.54",
                 "containerPath": "/usr/local/nvidia/lib64/libcuda.so.550.54", "options": ro},
                {"hostPath": f"{drv}/usr/local/nvidia/lib64/libnvidia-ml.so.550.54",
                 "containerPath": "/usr/local/nvidia/lib64/libnvidia-ml.so.550.54", "options": ro},
                {"hostPath": f"{drv}/usr/local/nvidia/bin/nvidia-smi",
                 "containerPath": "/usr/local/nvidia/bin/nvidia-smi", "options": ro},
            ],
        },
    }
    assert cdi.check(data, "4.3.1") == []


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "spacehooks", *args], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_cli_prints_spec_without_podman(tmp_path, server):
    root, drv = fake_host(tmp_path / "host", gpus=1)
    server.configure(podman_url="unix:///nonexistent.sock")
    result = cli("gpu", "cdi-generate", "--dev-root", str(root), "--driver-root", str(drv),
                 "--cdi-version", "0.4.0", "-o", "-")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["cdiVersion"] == "0.4.0"
    assert [d["name"] for d in data["devices"]] == ["0", "all"]


def test_cli_no_device_found(tmp_path, server):
    root, drv = fake_host(tmp_path / "host", gpus=0)
    result = cli("gpu", "cdi-generate", "--dev-root", str(root), "--driver-root", str(drv), "-o", "-")
    assert result.returncode == 1
    assert result.stderr == (f"Error: no NVIDIA GPU found: no {root}/dev/nvidia[0-9]* device node\n"
                             "  fix: load the NVIDIA driver (`nvidia-smi` should list the GPUs), or pass --dev-root\n")


def test_no_driver_library(tmp_path, server):
    from spacehooks import config
    from spacehooks.run import gpu
    root, drv = fake_host(tmp_path / "host", libcuda=False)
    with pytest.raises(SpaceError) as err:
        gpu.cdi_generate(config.load(), root, drv, "-", "0.5.0")
    assert err.value.format_message() == (
        f"no NVIDIA driver library (libcuda.so*) under {drv}\n"
        "  fix: install the driver's user-space libraries, or pass --driver-root")
