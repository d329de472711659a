"""Base images: recipe hashing, skip when current, load from the cache, and the real image."""
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import PODMAN_URL, VENV_BIN
from spacehooks import baseimage
from spacehooks.engine.podman import PodmanEngine

HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
FIX = ("fix: check that the Debian mirror and PyPI are reachable "
       "(build.apt_mirror, build.pip_index_url, build.ca_bundle)")


def spacehooks(server, *args, path_prefix=None):
    env = {**os.environ, **server.env()}
    if path_prefix:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    return subprocess.run([str(VENV_BIN / "spacehooks"), *args], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def podman(*args, check=True):
    return subprocess.run(["podman", "--url", PODMAN_URL, *args], check=check, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture
def fake_mmdebstrap(tmp_path):
    """An mmdebstrap that records its arguments and fails: proves whether a build ran."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    marker = tmp_path / "mmdebstrap-args"
    script = bindir / "mmdebstrap"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {marker}\necho 'E: fake failure' >&2\nexit 3\n")
    script.chmod(0o755)
    return bindir, marker


def tiny_image(reference: str, label: str) -> None:
    """A one-file image labelled with a recipe hash (an out-of-date base image stand-in)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    subprocess.run(["podman", "--url", PODMAN_URL, "import", "--change", f"LABEL {baseimage.LABEL}={label}",
                    "-", reference], input=data.getvalue(), check=True, capture_output=True)


def test_recipe_digest_depends_on_the_recipe_only():
    r311 = baseimage.recipe_for("3.11")
    assert r311.release == "bookworm"
    assert r311.digest() == baseimage.recipe_for("3.11").digest()
    assert len(r311.digest()) == 16
    assert baseimage.recipe_for("3.13").debs[-2:] == ("libglib2.0-0t64", "passwd")
    digests = {r311.digest(), baseimage.recipe_for("3.9").digest(), baseimage.recipe_for("3.13").digest(),
               baseimage.Recipe("3.11", "bookworm", r311.debs + ("ffmpeg",), r311.pip_packages).digest(),
               baseimage.Recipe("3.11", "bookworm", r311.debs, r311.pip_packages[:-1]).digest()}
    assert len(digests) == 5


def test_unknown_python_is_refused(server):
    result = spacehooks(server, "base-image", "build", "--python", "3.10")
    assert result.returncode == 1
    assert result.stdout == ("Error: no Debian release provides python 3.10; spacehooks builds 3.9, 3.11, 3.13\n"
                             "  fix: use one of 3.9, 3.11, 3.13, or map python_versions.'3.10' to a registry image\n")


def test_host_mirrors_reads_both_source_formats(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
                      "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n")
    legacy = tmp_path / "sources.list"
    legacy.write_text("deb [arch=amd64] http://old.example/debian bookworm main\n")
    assert baseimage.host_mirrors([deb822]) == ("http://mirror.example/debian", "http://mirror.example/debian-security")
    assert baseimage.host_mirrors([tmp_path / "missing", legacy]) == ("http://old.example/debian",
                                                                     baseimage.DEFAULT_SECURITY)


def test_registry_entries_are_not_built(server, podman_url):
    server.configure(python_versions={"3.10": "python:3.10-slim"})
    result = spacehooks(server, "base-image", "build")
    assert result.returncode == 0, result.stdout
    assert result.stdout == "-----> python 3.10: python:3.10-slim is a registry image; nothing to build\n"
    listing = spacehooks(server, "base-image", "list")
    assert listing.stdout == f"{'3.10':<6} {'python:3.10-slim':<40} registry image (not pulled)\n"


def test_outdated_image_is_rebuilt_with_the_host_mirror(server, podman_url, fake_mmdebstrap, tmp_path):
    bindir, marker = fake_mmdebstrap
    reference = f"localhost/spacehooks/outdated-test-{os.getpid()}:3.11"
    tiny_image(reference, "0000000000000000")
    try:
        server.configure(python_versions={"3.11": reference}, **{"base_image.cache_dir": str(tmp_path / "cache")})
        assert spacehooks(server, "base-image", "list").stdout.split(None, 2)[2] == \
            "outdated (run `base-image build`)\n"
        result = spacehooks(server, "base-image", "build", path_prefix=bindir)
    finally:
        podman("rmi", reference)
    main, security = baseimage.host_mirrors()
    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert lines[0] == f"-----> {reference} was made from another recipe (0000000000000000); rebuilding"
    assert lines[1] == (f"-----> Building {reference}: Debian bookworm + huggingface_hub, requests, datasets "
                        f"(a few minutes)")
    assert lines[3:] == ["Error: mmdebstrap failed for Debian bookworm (exit 3):", "E: fake failure", "  " + FIX]
    args = marker.read_text().splitlines()
    assert f"--include={','.join(baseimage.recipe_for('3.11').debs)}" in args
    assert args[-5:-3] == ["bookworm", str(Path(args[-4]).parent / "rootfs.tar")]
    assert args[-3:] == [f"deb {main} bookworm main", f"deb {main} bookworm-updates main",
                         f"deb {security} bookworm-security main"]
    assert list((tmp_path / "cache").glob("spacehooks-base-*")) == []


def test_apt_mirror_setting_is_used(server, fake_mmdebstrap, tmp_path, podman_url):
    bindir, marker = fake_mmdebstrap
    server.configure(python_versions={"3.13": f"localhost/spacehooks/mirror-test-{os.getpid()}:3.13"},
                     **{"build.apt_mirror": "http://apt.example/debian",
                        "base_image.cache_dir": str(tmp_path / "cache")})
    result = spacehooks(server, "base-image", "build", path_prefix=bindir)
    assert result.returncode == 1
    args = marker.read_text().splitlines()
    assert "trixie" in args
    assert "deb http://apt.example/debian trixie main" in args


def test_image_has_python_user_packages_and_working_pip(base_image):
    script = ("python --version; id -u; id -un; pwd; "
              "python -c 'import huggingface_hub, requests, datasets; print(\"imports ok\")'; "
              "pip install --quiet six && python -c 'import six; print(\"pip ok\")'")
    result = podman("run", "--rm", "--user", "1000", "-v", f"{HOST_CA}:/tmp/ca.crt:ro",
                    "-e", "PIP_CERT=/tmp/ca.crt", base_image, "sh", "-c", script, check=False)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout
    assert lines[0].startswith("Python 3.11.")
    assert lines[1:] == ["1000", "user", "/home/user/app", "imports ok", "pip ok"]
    config = json.loads(podman("image", "inspect", base_image).stdout)[0]["Config"]
    assert config["Labels"][baseimage.LABEL] == baseimage.recipe_for("3.11").digest()
    assert config["Env"][0].startswith("PATH=/opt/venv/bin:")


def test_second_build_is_a_no_op(server, base_image, fake_mmdebstrap):
    bindir, marker = fake_mmdebstrap
    result = spacehooks(server, "base-image", "build", "--python", "3.11", path_prefix=bindir)
    assert result.returncode == 0, result.stdout
    assert result.stdout == f"-----> {base_image} is up to date (recipe {baseimage.recipe_for('3.11').digest()})\n"
    assert not marker.exists()
    assert spacehooks(server, "base-image", "list").stdout == f"3.11   {base_image:<40} up to date\n"


def test_force_runs_the_build_even_when_current(server, base_image, fake_mmdebstrap, tmp_path):
    bindir, marker = fake_mmdebstrap
    server.configure(**{"base_image.cache_dir": str(tmp_path / "cache")})
    result = spacehooks(server, "base-image", "build", "--force", path_prefix=bindir)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == f"-----> Building {base_image}: Debian bookworm + huggingface_hub, " \
                                            f"requests, datasets (a few minutes)"
    assert marker.exists()


def test_cached_archive_is_loaded_instead_of_built(server, base_image, fake_mmdebstrap, tmp_path):
    bindir, marker = fake_mmdebstrap
    reference = f"localhost/spacehooks/cache-test-{os.getpid()}:3.11"
    server.configure(python_versions={"3.11": reference}, **{"base_image.cache_dir": str(tmp_path / "cache")})
    digest = baseimage.recipe_for("3.11").digest()
    archive = tmp_path / "cache" / f"cache-test-{os.getpid()}_3.11-{digest}.tar"
    podman("tag", base_image, reference)
    try:
        archive.parent.mkdir()
        PodmanEngine(PODMAN_URL, tmp_path).save_image(reference, archive)
        podman("rmi", reference)
        assert spacehooks(server, "base-image", "list").stdout == \
            f"3.11   {reference:<40} missing (cached: `base-image build` loads it)\n"
        result = spacehooks(server, "base-image", "build", path_prefix=bindir)
        assert result.returncode == 0, result.stdout
        lines = result.stdout.splitlines()
        assert lines[0] == f"-----> Loading {reference} from {archive}"
        assert lines[1].startswith("       loaded in ") and len(lines) == 2
        assert not marker.exists()
        assert spacehooks(server, "base-image", "list").stdout == f"3.11   {reference:<40} up to date\n"
    finally:
        podman("rmi", reference, check=False)


def test_unreachable_podman_service_is_reported(server, tmp_path):
    server.configure(podman_url=f"unix://{tmp_path}/none.sock")
    result = spacehooks(server, "base-image", "list")
    assert result.returncode == 1
    assert result.stdout == (f"Error: Podman service at unix://{tmp_path}/none.sock did not answer: Error: unable to "
                             f"connect to Podman socket: Get \"http://d/v4.3.1/libpod/_ping\": dial unix "
                             f"{tmp_path}/none.sock: connect: no such file or directory\n"
                             "  fix: start it with contrib/podman/start-service.sh, or fix podman_url\n")


def test_building_an_unoffered_version_prints_the_config_to_use(server, base_image):
    server.configure(python_versions={"3.13": "localhost/spacehooks/python:3.13"})
    result = spacehooks(server, "base-image", "build", "--python", "3.11")
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[1:] == [
        "       python 3.11 is not offered to Spaces yet; put this in the server config:",
        "         python_versions:",
        '           "3.13": localhost/spacehooks/python:3.13',
        f'           "3.11": {base_image}']
