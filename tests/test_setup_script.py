"""contrib/setup.sh run for real in a temp prefix: a venv from the checkout, config, state,
repositories, the Podman service check and `spacehooks serve` in the background; a second
run changes nothing; a repository added later gets working hooks. Plus the systemd units."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import urllib.request

import pytest

import servers
from helpers import GRADIO_README, git, push, work_repo

SOURCES = ("contrib", "githooks", "spacehooks", "setup.cfg", "setup.py", "pyproject.toml", "README.md")


def _snapshot(dest):
    """Other work changes the shared checkout meanwhile; set up from a still copy of it."""
    for name in SOURCES:
        src = servers.REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def _setup(src, prefix, port, socket):
    result = subprocess.run([str(src / "contrib" / "setup.sh"), "--prefix", str(prefix), "--python", "/usr/bin/python3",
                             "--no-base-image", "--listen", f"127.0.0.1:{port}", "--podman-socket", socket],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                            env={k: v for k, v in os.environ.items() if not k.startswith("SPACEHOOKS_")})
    assert result.returncode == 0, result.stdout
    return [line for line in result.stdout.splitlines() if line.startswith(("----->", "       "))]


@pytest.mark.slow
def test_setup_twice_in_a_prefix(tmp_path, podman_url, monkeypatch):
    for key, value in servers.SAFE_DIRECTORY_ENV.items():
        monkeypatch.setenv(key, value)
    src = _snapshot(tmp_path / "src")
    (src / "tmp").mkdir()
    prefix = tmp_path / "p"
    port = servers.free_port()
    socket = podman_url.removeprefix("unix://")
    pid = None
    try:
        first = _setup(src, prefix, port, socket)
        assert first[0] == f"-----> Python environment {prefix}/opt/spacehooks/venv"
        assert first[1].startswith("       installed spacehooks (source ")
        assert f"-----> Podman service on {socket}" in first
        assert f"       podman service already answering on {socket}" in first
        assert first[first.index(f"-----> Configuration {prefix}/etc/spacehooks/config.yaml") + 1] == "       wrote a new one"
        assert first[-2] == "-----> spacehooks is set up"
        config = (prefix / "etc" / "spacehooks" / "config.yaml").read_text()
        assert f"repo_root: {prefix}/srv/git\n" in config
        assert f'  listen: "127.0.0.1:{port}"\n' in config
        assert (prefix / "var" / "lib" / "spacehooks").is_dir()
        assert os.access(prefix / "usr" / "local" / "bin" / "spacehooks-git-shell", os.X_OK)
        pid = int((prefix / "run" / "spacehooks" / "serve.pid").read_text())
        os.kill(pid, 0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200

        second = _setup(src, prefix, port, socket)
        assert second == [
            f"-----> Python environment {prefix}/opt/spacehooks/venv",
            second[1],
            f"-----> Podman service on {socket}",
            f"       podman service already answering on {socket}",
            f"-----> Configuration {prefix}/etc/spacehooks/config.yaml",
            "       kept (remove it to get a fresh one)",
            f"-----> State folder {prefix}/var/lib/spacehooks",
            "       present",
            f"-----> Repositories {prefix}/srv/git",
            "       present",
            f"       no repositories yet; after  git init --bare {prefix}/srv/git/OWNER/NAME.git"
            f"  run  spacehooks install {prefix}/srv/git",
            "-----> spacehooks serve",
            f"       running (pid {pid}, log {prefix}/var/log/spacehooks/serve.log)",
            "-----> Nothing to change: spacehooks is set up",
            f"       config: {prefix}/etc/spacehooks/config.yaml   state: {prefix}/var/lib/spacehooks"
            f"   repositories: {prefix}/srv/git",
        ]
        assert second[1].startswith("       up to date (source ")

        # a repository made later: the next run installs the hooks, and they work
        bare = prefix / "srv" / "git" / "alice" / "demo.git"
        git("init", "-q", "--bare", "-b", "main", str(bare))
        third = _setup(src, prefix, port, socket)
        assert f"       {bare}: installed pre-receive, installed post-receive, enabled push options (plain layout)" in third
        assert third[-2] == "-----> spacehooks is set up"
        work = work_repo(tmp_path / "work", {"README.md": GRADIO_README.replace("colorFrom: blue", "colorFrom: orange"),
                                             "app.py": "print(1)\n"})
        refused = push(work, str(bare), env={"SPACEHOOKS_CONFIG": "", "SPACEHOOKS_HOME": ""})
        assert refused.returncode != 0
        assert "remote:  !     Sorry, your push was rejected during Space verification:" in refused.stdout

        unit = prefix / "etc" / "systemd" / "system" / "spacehooks.service"
        text = unit.read_text()
        assert f"ExecStart={prefix}/opt/spacehooks/venv/bin/spacehooks serve\n" in text
        assert f"Environment=SPACEHOOKS_CONFIG={prefix}/etc/spacehooks/config.yaml\n" in text
        verify = servers.run(["systemd-analyze", "verify", "--man=no", unit], check=False)
        assert verify.returncode == 0, verify.stdout
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)


def test_systemd_units_match_the_podman_settings():
    units = servers.CONTRIB / "systemd"
    verify = servers.run(["systemd-analyze", "verify", "--man=no", units / "spacehooks-podman.socket",
                          units / "spacehooks-podman.service"], check=False)
    assert verify.returncode == 0, verify.stdout
    from spacehooks import config
    default_socket = [s.default for s in config.SETTINGS if s.key == "podman_url"][0].removeprefix("unix://")
    assert f"ListenStream={default_socket}\n" in (units / "spacehooks-podman.socket").read_text()
    service = (units / "spacehooks-podman.service").read_text()
    # the same containers.conf start-service.sh writes (runc, explicit ulimits)
    assert "Environment=CONTAINERS_CONF=/etc/spacehooks/containers.conf\n" in service
    assert 'conf_dir=${SPACEHOOKS_PODMAN_CONF_DIR:-/etc/spacehooks}' in (servers.CONTRIB / "podman" / "start-service.sh").read_text()
    assert "KillMode=process\n" in service and "Restart=on-failure\n" in service
    serve = (units / "spacehooks.service").read_text()
    assert f"Environment=SPACEHOOKS_CONFIG={config.DEFAULT_CONFIG}\n" in serve
    assert f"Environment=SPACEHOOKS_HOME={config.DEFAULT_HOME}\n" in serve
    assert "Restart=on-failure\n" in serve
