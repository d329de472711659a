"""contrib/setup.sh run for real in a temp prefix: a venv from the checkout, config, state,
repositories, the Podman service check and `spacehooks serve` in the background; a second
run changes nothing; then a Space pushed to a new repository (`spacehooks create`) runs and
the gateway setup started serves it, and a repository added later gets working hooks. Plus
`spacehooks create`, the git template and the systemd units."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import urllib.request

import pytest

import servers
from helpers import GIT_ENV, GRADIO_README, git, push, work_repo

STATIC_README = "---\ntitle: Static\nemoji: 📄\ncolorFrom: red\ncolorTo: pink\nsdk: static\n---\n"
DOCKER_README = "---\ntitle: Web\nsdk: docker\napp_port: 7860\nstartup_duration_timeout: 60s\n---\n"
DOCKERFILE = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /app\nCOPY . /app\n"
              'CMD ["python", "-m", "http.server", "7860"]\n')

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


def _setup(src, prefix, port, socket, extra=()):
    result = subprocess.run([str(src / "contrib" / "setup.sh"), "--prefix", str(prefix), "--python", "/usr/bin/python3",
                             "--listen", f"127.0.0.1:{port}", "--podman-socket", socket, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                            env={k: v for k, v in os.environ.items() if not k.startswith("SPACEHOOKS_")})
    assert result.returncode == 0, result.stdout
    return [line for line in result.stdout.splitlines() if line.startswith(("----->", "       "))]


@pytest.mark.slow
def test_setup_twice_in_a_prefix(tmp_path, podman_url, engine_base_image, monkeypatch):
    for key, value in servers.SAFE_DIRECTORY_ENV.items():
        monkeypatch.setenv(key, value)
    src = _snapshot(tmp_path / "src")
    (src / "tmp").mkdir()
    prefix = tmp_path / "p"
    port = servers.free_port()
    socket = podman_url.removeprefix("unix://")
    pid = None
    cli = [str(prefix / "opt" / "spacehooks" / "venv" / "bin" / "spacehooks")]
    env = {**os.environ, "SPACEHOOKS_CONFIG": str(prefix / "etc" / "spacehooks" / "config.yaml"),
           "SPACEHOOKS_HOME": str(prefix / "var" / "lib" / "spacehooks")}
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

        # another user of the machine's Podman service may be checking the base image right
        # now: setup then waits for that check first, and says so
        second = [line for line in _setup(src, prefix, port, socket)
                  if not line.startswith("       -----> Waiting for another build of ")]
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
            "       no repositories yet; create one with  spacehooks create OWNER/NAME",
            "       new repositories get the hooks: spacehooks create OWNER/NAME"
            f" (or git init --bare --template={prefix}/etc/spacehooks/git-template)",
            "-----> Base image",
            second[13],
            "-----> spacehooks serve",
            f"       running (pid {pid}, log {prefix}/var/log/spacehooks/serve.log)",
            "-----> Nothing to change: spacehooks is set up",
            f"       config: {prefix}/etc/spacehooks/config.yaml   state: {prefix}/var/lib/spacehooks"
            f"   repositories: {prefix}/srv/git",
        ]
        assert second[1].startswith("       up to date (source ")
        assert second[13].startswith("       -----> localhost/spacehooks/python:3.11 is up to date (recipe ")
        assert (f"       {prefix}/etc/spacehooks/git-template: installed pre-receive, installed post-receive,"
                " enabled push options, enabled git's checks of received objects") in first

        # issue 6: a push to a new repository becomes a running Space, served by setup's serve
        created = servers.run(cli + ["create", "alice/page"], env=env)
        page = prefix / "srv" / "git" / "alice" / "page.git"
        assert created.stdout.splitlines() == [f"created {page} (owner root, hooks installed)",
                                               f"push to it:  git push {page} HEAD:main"]
        # the address works as printed, from a checkout whose branch is not main
        work = work_repo(tmp_path / "page", {"README.md": STATIC_README, "index.html": "<p>set up and served</p>\n"})
        git("checkout", "-q", "-b", "feature", cwd=work)
        printed = created.stdout.splitlines()[1].removeprefix("push to it:  ").split()
        pushed = git(*printed[1:], "-o", "wait", cwd=work, check=False, env={"SPACEHOOKS_CONFIG": "", "SPACEHOOKS_HOME": ""})
        assert pushed.returncode == 0, pushed.stdout
        assert "-----> Build #1 deployed: alice/page is RUNNING" in _remote(pushed), pushed.stdout
        assert _get(port, "alice-page.localhost") == (200, "<p>set up and served</p>\n")

        # a repository made with plain `git init` from the template gets the hooks too
        web = prefix / "srv" / "git" / "alice" / "web.git"
        git("init", "-q", "--bare", "-b", "main", f"--template={prefix}/etc/spacehooks/git-template", str(web))
        assert (web / "hooks" / "pre-receive").read_text() == (prefix / "srv/git/alice/page.git/hooks/pre-receive").read_text()
        assert git("config", "--get", "receive.advertisePushOptions", cwd=web).stdout == "true\n"
        work = work_repo(tmp_path / "web", {"README.md": DOCKER_README, "Dockerfile": DOCKERFILE,
                                            "index.html": "<p>docker Space</p>\n"})
        pushed = push(work, str(web), "main", "wait", env={"SPACEHOOKS_CONFIG": "", "SPACEHOOKS_HOME": ""})
        assert pushed.returncode == 0, pushed.stdout
        assert "-----> Build #2 deployed: alice/web is RUNNING" in _remote(pushed), pushed.stdout
        assert _get(port, "alice-web.localhost") == (200, "<p>docker Space</p>\n")
        servers.run(cli + ["delete", "alice/web", "--yes"], env=env)

        # a repository made later without the template: the next run installs the hooks, and they work
        bare = prefix / "srv" / "git" / "alice" / "demo.git"
        git("init", "-q", "--bare", "-b", "main", str(bare))
        third = _setup(src, prefix, port, socket)
        assert (f"       {bare}: installed pre-receive, installed post-receive, enabled push options, "
                "enabled git's checks of received objects (plain layout)") in third
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
            subprocess.run(cli + ["delete", "alice/web", "--yes"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            os.kill(pid, signal.SIGTERM)


def _remote(result):
    return [line.removeprefix("remote: ").rstrip() for line in result.stdout.splitlines() if line.startswith("remote: ")]


def _get(port, host):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/index.html", headers={"Host": host})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read().decode()


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


def _cli(args, config, home, **kw):
    env = {**os.environ, "SPACEHOOKS_CONFIG": str(config), "SPACEHOOKS_HOME": str(home)}
    return subprocess.run([str(servers.REPO / ".venv" / "bin" / "spacehooks"), *args], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_create_makes_a_bare_repository_with_the_hooks(tmp_path):
    import socket
    root = tmp_path / "git"
    config = tmp_path / "config.yaml"
    config.write_text(f"repo_root: {root}\n")
    home = tmp_path / "state"
    missing = _cli(["create", "alice/demo"], config, home)
    assert (missing.returncode, missing.stderr) == (1, f"Error: repo_root {root} does not exist\n"
                                                       "  fix: create it (contrib/setup.sh does) or set repo_root in the config\n")
    root.mkdir()
    os.chown(root, 65534, 65534)  # the git account owns repo_root: the new repository is its
    made = _cli(["create", "alice/demo"], config, home)
    repo = root / "alice" / "demo.git"
    assert (made.returncode, made.stderr) == (0, "")
    assert made.stdout == (f"created {repo} (owner nobody, hooks installed)\n"
                           f"push to it:  git push nobody@{socket.getfqdn()}:{repo} HEAD:main\n"
                           f"  (from this server too: git push nobody@localhost:{repo} HEAD:main, with your key in "
                           "~nobody/.ssh/authorized_keys)\n")
    for path in (root / "alice", repo, repo / "hooks" / "pre-receive", repo / "objects"):
        assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534), path
    assert git("config", "--get", "receive.advertisePushOptions", cwd=repo, env=servers.SAFE_DIRECTORY_ENV).stdout == "true\n"
    assert git("symbolic-ref", "HEAD", cwd=repo, env=servers.SAFE_DIRECTORY_ENV).stdout == "refs/heads/main\n"

    again = _cli(["create", "alice/demo.git"], config, home)
    assert (again.returncode, again.stdout, again.stderr) == (
        1, "", f"Error: {repo} already exists\n  fix: push to it, or reinstall its hooks with: spacehooks install {repo}\n")
    for bad in ("alice", "alice/", "/demo", "alice/-x", "alice/demo/x", "../demo", "al ice/demo", "alice/.git"):
        refused = _cli(["create", bad], config, home)
        assert (refused.returncode, refused.stdout, refused.stderr) == (
            1, "", f"Error: cannot create {bad!r}: give OWNER/NAME, each of letters, digits, . _ - and starting with "
                   "a letter or digit\n  fix: for example: spacehooks create alice/demo\n"), bad
    assert sorted(p.name for p in root.rglob("*.git")) == ["demo.git"]


def test_git_template_gives_new_repositories_the_hooks(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"repo_root: {tmp_path / 'git'}\n")
    home = tmp_path / "state"
    template = tmp_path / "template"
    first = _cli(["git-template", str(template)], config, home)
    assert (first.returncode, first.stdout) == (0, f"{template}: installed pre-receive, installed post-receive, "
                                                   "enabled push options, enabled git's checks of received objects\n")
    second = _cli(["git-template", str(template)], config, home)
    assert (second.returncode, second.stdout) == (0, f"{template}: unchanged\n")

    installed = tmp_path / "git" / "a" / "installed.git"
    git("init", "-q", "--bare", str(installed))
    assert _cli(["install", str(installed)], config, home).returncode == 0
    new = tmp_path / "git" / "a" / "new.git"
    git("-c", f"init.templateDir={template}", "init", "-q", "--bare", str(new))
    for name in ("pre-receive", "post-receive"):
        assert (new / "hooks" / name).read_text() == (installed / "hooks" / name).read_text()
        assert os.access(new / "hooks" / name, os.X_OK)
    assert git("config", "--get", "receive.advertisePushOptions", cwd=new).stdout == "true\n"
    assert git("config", "--get", "core.bare", cwd=new).stdout == "true\n"


SHELL_SCRIPTS = ("setup.sh", "podman/start-service.sh", "ssh/spacehooks-git-shell", "gpu-check/run.sh")


def test_contrib_shell_scripts_pass_shellcheck():
    """setup.sh's package and base-image steps run only on a real server: check them statically."""
    for script in SHELL_SCRIPTS:
        path = servers.CONTRIB / script
        shell = "bash" if path.read_text().startswith("#!/bin/bash") else "sh"
        syntax = servers.run([shell, "-n", path], check=False)
        assert syntax.returncode == 0, f"{script}: {syntax.stdout}"
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is missing: apt-get install shellcheck")
    lint = servers.run(["shellcheck", "-S", "warning", *(servers.CONTRIB / s for s in SHELL_SCRIPTS)], check=False)
    assert lint.returncode == 0, lint.stdout


# per test process: sessions running this test at the same time on one machine would otherwise
# move one account's home and group under each other
GIT_USER = f"shsetup-git-{os.getpid()}"
GROUP = f"shsetup-{os.getpid()}"


@pytest.mark.slow
def test_setup_with_a_git_account_keeps_the_state_folder_roots(monkeypatch):
    """The git account gets the group of root's state folder and a template for new
    repositories; its push (post-receive) hands over a record that the worker builds."""
    import grp
    import stat
    from spacehooks import config, state
    for key, value in servers.SAFE_DIRECTORY_ENV.items():
        monkeypatch.setenv(key, value)
    base = servers.server_dir("setup")
    try:
        src = _snapshot(base / "src")
        prefix = base / "p"
        repo_root, home, etc = prefix / "srv" / "git", prefix / "var" / "lib" / "spacehooks", prefix / "etc" / "spacehooks"
        if subprocess.run(["getent", "group", GROUP], stdout=subprocess.DEVNULL).returncode == 0:
            servers.run(["groupdel", GROUP])
        user = servers.ensure_user(GIT_USER, repo_root)
        args = ["--git-user", GIT_USER, "--group", GROUP, "--no-serve", "--no-podman", "--no-base-image"]
        first = _setup(src, prefix, servers.free_port(), "/nonexistent.sock", args)
        for line in (f"       created the group {GROUP}",
                     f"       added {GIT_USER} to the group {GROUP}",
                     f"       {home} is now group {GROUP}, setgid, writable by root only",
                     f"       made {home}/incoming for the git account's push records",
                     f"       {repo_root}/.gitconfig: init.templateDir = {etc}/git-template",
                     f"       new repositories get the hooks: spacehooks create OWNER/NAME (or git init --bare as {GIT_USER})"):
            assert line in first, "\n".join(first)
        assert f'home_group: "{GROUP}"\n' in (etc / "config.yaml").read_text()
        # the venv comes from the system Python, and the git account can run it (the hooks do)
        venv = prefix / "opt" / "spacehooks" / "venv"
        assert f"       {GIT_USER} runs the hooks' interpreter {venv}/bin/python" in first, first
        assert os.path.realpath(venv / "bin" / "python").startswith("/usr/bin/python3"), os.path.realpath(venv / "bin" / "python")
        doctor_env = {**os.environ, "SPACEHOOKS_CONFIG": str(etc / "config.yaml"), "SPACEHOOKS_HOME": str(home)}
        doctor = subprocess.run([venv / "bin" / "python", "-m", "spacehooks", "doctor"], env=doctor_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert (f"ok       the hook account {GIT_USER} (owner of {repo_root}) runs the hooks' interpreter "
                f"{venv}/bin/python") in doctor.stdout.splitlines(), doctor.stdout
        # the same venv where the git account cannot enter (as one under /root): doctor names it and the fix
        private = base / "private"
        private.mkdir(mode=0o700)
        shutil.copytree(venv, private / "venv", symlinks=True)
        hidden = private / "venv" / "bin" / "python"
        doctor = subprocess.run([hidden, "-m", "spacehooks", "doctor"], env=doctor_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = doctor.stdout.splitlines()
        assert doctor.returncode != 0
        problem = next(i for i, line in enumerate(lines) if "cannot run the hooks' interpreter" in line)
        assert lines[problem].startswith(f"PROBLEM  the hook account {GIT_USER} (owner of {repo_root}) cannot run the "
                                         f"hooks' interpreter {hidden}: "), lines
        assert lines[problem].endswith("; every push fails"), lines
        assert lines[problem + 1] == (f"  fix: make the venv from the system Python, readable by {GIT_USER}: "
                                      f"/usr/bin/python3 -m venv VENV (contrib/setup.sh does), then spacehooks install {repo_root}")
        # and setup refuses to leave a venv the git account cannot run: a Python in a folder only
        # root enters (a copy of the system's binary; it finds the system's standard library)
        (private / "bin").mkdir()
        shutil.copy2(os.path.realpath("/usr/bin/python3"), private / "bin" / "python3")
        refused = subprocess.run([str(src / "contrib" / "setup.sh"), "--prefix", str(base / "p2"),
                                  "--python", str(private / "bin" / "python3"),
                                  "--git-user", GIT_USER, "--group", GROUP, "--no-serve", "--no-podman", "--no-base-image"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                                 env={k: v for k, v in os.environ.items() if not k.startswith("SPACEHOOKS_")})
        assert refused.returncode == 1, refused.stdout
        assert refused.stdout.splitlines()[-1].startswith(
            f" !     {GIT_USER} cannot run {base}/p2/opt/spacehooks/venv/bin/python ("), refused.stdout
        settings = config.load(path=etc / "config.yaml", home=home)
        gid = grp.getgrnam(GROUP).gr_gid
        for path, owner, mode in ((home, (0, gid), 0o2755), (home / "state.db", (0, gid), 0o600),
                                  (home / "incoming", (0, gid), 0o1730), (home / "pushes", (0, gid), 0o2750)):
            info = path.stat()
            assert ((info.st_uid, info.st_gid), stat.S_IMODE(info.st_mode)) == (owner, mode), path

        second = _setup(src, prefix, servers.free_port(), "/nonexistent.sock", args)
        assert second[-2] == "-----> Nothing to change: spacehooks is set up", "\n".join(second)

        # as the git account: `git init --bare` picks up the template, a push queues a build
        env = {"HOME": user.pw_dir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **GIT_ENV}
        bare = repo_root / "bob" / "new.git"
        as_git = ["runuser", "-u", GIT_USER, "--", "env", *(f"{k}={v}" for k, v in env.items())]
        servers.run(as_git + ["git", "init", "-q", "--bare", "-b", "main", bare])
        assert (bare / "hooks" / "post-receive").read_text() == (etc / "git-template" / "hooks" / "post-receive").read_text()
        work_repo(base / "work", {"README.md": STATIC_README, "index.html": "<p>hi</p>\n"})
        servers.chown_tree(base / "work", user)
        pushed = servers.run(as_git + ["git", "-C", base / "work", "push", bare, "HEAD:refs/heads/main"], check=False)
        assert pushed.returncode == 0, pushed.stdout
        head = git("rev-parse", "HEAD", cwd=base / "work").stdout.strip()
        assert f"remote: -----> Push of bob/new at {head[:12]} recorded" in pushed.stdout, pushed.stdout
        assert sorted(p.name for p in (home / "incoming").iterdir()) != []  # waiting for the server
        # serve runs as root and reads the git account's repositories: the builder (export of
        # the commit) and the gateway (static files) open them with pygit2
        from spacehooks.git.repo import Repo
        assert Repo(bare).entry(head, "index.html").kind == "blob"
        # the worker (root) takes the record in, checks it, and builds
        from spacehooks.run import worker
        assert worker.Worker(settings).run_once()
        st = state.open(settings)
        try:
            assert [(b["status"], b["commit"]) for b in st.builds("bob/new")] == [("succeeded", head)]
            assert st.get_space("bob/new")["stage"] == "RUNNING"
        finally:
            st.close()

        # `create` prints an SSH address that works as printed from this machine (the test
        # sshd listens on another port: GIT_SSH_COMMAND carries it, the address is unchanged)
        created = subprocess.run([venv / "bin" / "spacehooks", "create", "bob/viassh"], env=doctor_env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        made = repo_root / "bob" / "viassh.git"
        assert created.stdout.splitlines()[0] == f"created {made} (owner {GIT_USER}, hooks installed)"
        local = created.stdout.splitlines()[2]
        assert local == (f"  (from this server too: git push {GIT_USER}@localhost:{made} HEAD:main, with your key in "
                         f"~{GIT_USER}/.ssh/authorized_keys)")
        command = local.removeprefix("  (from this server too: ").split(", with")[0].split()
        ssh = servers.SSHServer(base / "sshd")
        ssh.start()
        try:
            key = servers.keypair(base / "alice_key")
            shell = prefix / "usr" / "local" / "bin" / "spacehooks-git-shell"
            ssh.authorize(GIT_USER, key.with_suffix(".pub"), f'command="{shell} alice",restrict')
            work = work_repo(base / "work-ssh", {"README.md": STATIC_README, "index.html": "<p>ssh</p>\n"})
            git("checkout", "-q", "-b", "topic", cwd=work)
            pushed = git(*command[1:], cwd=work, check=False, env={"GIT_SSH_COMMAND": ssh.ssh_command(key)})
            assert pushed.returncode == 0, pushed.stdout
            tip = git("rev-parse", "HEAD", cwd=work).stdout.strip()
            # no serve runs in this prefix: the record waits in the spool for the worker
            assert f"remote: -----> Push of bob/viassh at {tip[:12]} recorded" in pushed.stdout, pushed.stdout
        finally:
            ssh.stop()
        assert worker.Worker(settings).run_once()
        st = state.open(settings)
        try:
            assert [(b["status"], b["commit"], b["pusher"]) for b in st.builds("bob/viassh")] == [
                ("succeeded", tip, "alice")]
        finally:
            st.close()
    finally:
        shutil.rmtree(base)
        subprocess.run(["userdel", GIT_USER], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["groupdel", GROUP], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
