"""contrib/gpu-check/run.sh: the parts that run without a GPU (arguments, prerequisites)."""
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "contrib" / "gpu-check" / "run.sh"


def run(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_help():
    result = run("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: run.sh [--carry DIR] [--out DIR] [--python PY] [--device N] [--dev-root DIR] [--driver-root DIR] [--keep-spec]\n")


@pytest.mark.parametrize("args,message", [
    (["--bogus"], "run.sh: unknown argument --bogus\nusage: run.sh"),
    (["--device"], "run.sh: --device needs a value\n  fix: see run.sh --help\n"),
    (["--device", "x"], "run.sh: --device must be a GPU index such as 0, found 'x'\n"),
    (["--out", "/"], "run.sh: --out must be a folder of its own, found '/'\n"),
    (["--carry", "/nonexistent"], "run.sh: no podman in /nonexistent/bin\n"
     "  fix: make the carry folder on a Debian 12 machine: shared/gpu/make-carry.sh /nonexistent\n"),
])
def test_bad_arguments(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(message)


def test_refuses_a_host_without_gpu(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "podman").symlink_to("/bin/true")
    (tmp_path / "dev").mkdir()
    result = run("--carry", str(tmp_path), "--dev-root", str(tmp_path))
    assert (result.returncode, result.stderr) == (2, (
        f"run.sh: no {tmp_path}/dev/nvidia[0-9]* device node: this is not a GPU host\n"
        "  fix: run it on the GPU host, with the NVIDIA driver loaded\n"))
    (tmp_path / "dev" / "nvidia0").write_text("")
    result = run("--carry", str(tmp_path), "--dev-root", str(tmp_path), "--device", "3")
    assert (result.returncode, result.stderr) == (2, (
        f"run.sh: no {tmp_path}/dev/nvidia3\n  fix: pick an index from: {tmp_path}/dev/nvidia0 \n"))
