"""Real git servers on loopback for tests: sshd (plain and gitolite3), nginx + fcgiwrap +
git-http-backend, and the hook chains Gitea and GitLab (Gitaly) run.

Each server lives in its own world-traversable folder under /tmp (pytest's tmp_path is
root-only, and the git users here are dedicated unix accounts), and is stopped by `stop()`.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTRIB = REPO / "contrib"
GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
# The tests (root) read repositories owned by the git accounts; git refuses that by default.
SAFE_DIRECTORY_ENV = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, log: Path | None = None,
              timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}): {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s: {_tail(log)}")


def wait_path(path: Path, proc: subprocess.Popen, log: Path | None = None, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}): {_tail(log)}")
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not appear after {timeout}s: {_tail(log)}")


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-2000:]


def run(args, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kw)


def server_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"spacehooks-{prefix}-", dir="/tmp"))
    path.chmod(0o755)
    return path


def ensure_user(name: str, home: Path) -> pwd.struct_passwd:
    """A dedicated git account, as on a real server; its home moves to `home` each test."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        run(["useradd", "--system", "--user-group", "--shell", "/bin/sh", "--home-dir", home, name])
    if pwd.getpwnam(name).pw_dir != str(home):
        # usermod refuses while a process of the user lingers (an sshd session closing)
        for attempt in range(50):
            if run(["usermod", "--home", home, name], check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            run(["usermod", "--home", home, name])
    # "!" (useradd's default) marks the account locked and sshd without PAM refuses it;
    # "*" only means that no password works.
    run(["usermod", "-p", "*", name])
    home.mkdir(parents=True, exist_ok=True)
    entry = pwd.getpwnam(name)
    chown_tree(home, entry)
    return entry


def chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    os.chown(path, user.pw_uid, user.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def keypair(path: Path) -> Path:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", path])
    return path


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class SSHServer:
    """sshd on a loopback port with its own host key, config and authorized_keys files.

    `env` is set in every session (sshd's SetEnv), the way a server sets SPACEHOOKS_CONFIG
    for its git users. Keys are looked up in `<base>/authorized_keys/<user>` first, then in
    the user's own `~/.ssh/authorized_keys` (where gitolite writes its keys).
    """

    def __init__(self, base: Path, env: dict | None = None):
        self.base = base
        self.env = dict(env or {})
        self.port = free_port()
        self.keys_dir = base / "authorized_keys"
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        self.log = base / "sshd.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SSHServer":
        host_key = keypair(self.base / "host_ed25519")
        set_env = " ".join(f'"{k}={v}"' for k, v in self.env.items())
        config = [
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
            f"PidFile {self.base / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.keys_dir}/%u .ssh/authorized_keys",
            "StrictModes no", "UsePAM no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin no", "LogLevel VERBOSE",
        ]
        if set_env:
            config.append(f"SetEnv {set_env}")
        conf = self.base / "sshd_config"
        conf.write_text("\n".join(config) + "\n")
        # sshd's privilege-separation folder: missing on a new machine, and sshd refuses it
        # when it is group- or world-writable
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        os.chmod("/run/sshd", 0o755)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_port(self.port, self.proc, self.log)
        return self

    def authorize(self, user: str, pubkey: Path, options: str = "") -> None:
        line = f"{options} {pubkey.read_text().strip()}".strip()
        with open(self.keys_dir / user, "a") as fh:
            fh.write(line + "\n")

    def ssh_command(self, key: Path) -> str:
        """GIT_SSH_COMMAND for a client that uses `key` and trusts this test server."""
        return (f"ssh -p {self.port} -i {key} -o IdentitiesOnly=yes -o BatchMode=yes "
                f"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")

    def url(self, user: str, path: str) -> str:
        return f"ssh://{user}@127.0.0.1:{self.port}/{path.lstrip('/')}"

    def stop(self) -> None:
        _stop(self.proc)


class HTTPGitServer:
    """git-http-backend behind nginx (contrib/git-http-backend/spacehooks-git.conf: basic auth,
    so pushes carry REMOTE_USER) via fcgiwrap.

    Both run as root with configs in `base`; `env` reaches git and its hooks as FastCGI
    parameters (fcgiwrap hands a CGI only what nginx sends).
    """

    def __init__(self, base: Path, project_root: Path, env: dict | None = None):
        self.base = base
        self.project_root = project_root
        self.env = {"PATH": os.environ["PATH"], **(env or {})}
        self.port = free_port()
        self.users: dict[str, str] = {}
        self.socket = base / "fcgiwrap.sock"
        self.nginx_log = base / "nginx-error.log"
        self.fcgi_log = base / "fcgiwrap.log"
        self.nginx: subprocess.Popen | None = None
        self.fcgi: subprocess.Popen | None = None

    def add_user(self, name: str, password: str) -> None:
        self.users[name] = password
        hashed = run(["openssl", "passwd", "-apr1", password]).stdout.strip()
        with open(self.base / "htpasswd", "a") as fh:
            fh.write(f"{name}:{hashed}\n")

    def start(self) -> "HTTPGitServer":
        (self.base / "htpasswd").touch()
        with open(self.fcgi_log, "ab") as log:
            # its own process group: fcgiwrap's forked workers outlive a SIGTERM to the parent
            self.fcgi = subprocess.Popen(["/usr/sbin/fcgiwrap", "-c", "2", "-s", f"unix:{self.socket}"],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        wait_path(self.socket, self.fcgi, self.fcgi_log)
        location = self.location()
        tmp = self.base / "nginx-tmp"
        tmp.mkdir(mode=0o755, exist_ok=True)
        conf = self.base / "nginx.conf"
        conf.write_text(f"""
daemon off;
master_process on;
worker_processes 1;
user root;
pid {self.base}/nginx.pid;
error_log {self.nginx_log} info;
events {{ worker_connections 64; }}
http {{
    access_log {self.base}/nginx-access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{self.port};
{location}
    }}
}}
""")
        with open(self.nginx_log, "ab") as log:
            self.nginx = subprocess.Popen(["/usr/sbin/nginx", "-p", str(self.base), "-c", str(conf)],
                                          stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_port(self.port, self.nginx, self.nginx_log)
        return self

    def location(self) -> str:
        """contrib/git-http-backend/spacehooks-git.conf with this server's paths."""
        text = (CONTRIB / "git-http-backend" / "spacehooks-git.conf").read_text()
        params = "".join(f'    fastcgi_param {k} "{v}";\n' for k, v in self.env.items())
        replacements = [
            ("/etc/spacehooks/htpasswd;", f"{self.base}/htpasswd;"),
            ("GIT_PROJECT_ROOT /srv/git;", f"GIT_PROJECT_ROOT {self.project_root};"),
            ("unix:/run/fcgiwrap.socket;", f"unix:{self.socket};"),
            ("    fastcgi_param PATH /usr/local/bin:/usr/bin:/bin;\n", params),
        ]
        for old, new in replacements:
            assert old in text, f"spacehooks-git.conf no longer has {old!r}"
            text = text.replace(old, new)
        return text

    def url(self, user: str, path: str) -> str:
        return f"http://{user}:{self.users[user]}@127.0.0.1:{self.port}/git/{path.lstrip('/')}"

    def stop(self) -> None:
        _stop(self.nginx)
        if self.fcgi is not None and self.fcgi.poll() is None:
            os.killpg(self.fcgi.pid, signal.SIGTERM)
            self.fcgi.wait(timeout=5)


class Gitolite:
    """gitolite3 set up for a dedicated user with `gitolite setup -pk`, reached through an
    SSHServer. Any user may create (wild) repositories `owner/name` by pushing to them."""

    CONF = """repo gitolite-admin
    RW+ = {admin}

repo [a-zA-Z0-9_.-]+/[a-zA-Z0-9_.-]+
    C   = @all
    RW+ = @all
"""

    def __init__(self, base: Path, ssh: SSHServer, user: str = "spacehooks-gl"):
        self.base = base
        self.ssh = ssh
        self.home = base / "gitolite-home"
        self.account = ensure_user(user, self.home)
        self.user = user
        self.keys: dict[str, Path] = {}

    @property
    def repositories(self) -> Path:
        return self.home / "repositories"

    @property
    def local_code(self) -> Path:
        return self.home / "local"

    def as_git(self, *args, check=True) -> subprocess.CompletedProcess:
        return run(["runuser", "-u", self.user, "--", "env", f"HOME={self.home}",
                    f"PATH={os.environ['PATH']}", *args], cwd=self.home, check=check)

    def setup(self, users=("alice", "bob")) -> "Gitolite":
        for name in users:
            self.keys[name] = keypair(self.base / f"{name}_key")
        admin = users[0]
        pub = self.home / f"{admin}.pub"
        shutil.copy(f"{self.keys[admin]}.pub", pub)
        chown_tree(self.home, self.account)
        self.as_git("gitolite", "setup", "-pk", pub)
        rc = self.home / ".gitolite.rc"
        # LOCAL_CODE is where site hooks live (hooks/common is linked into every repo).
        rc.write_text(rc.read_text().replace('# LOCAL_CODE                =>  "$ENV{HOME}/local",',
                                             'LOCAL_CODE                =>  "$ENV{HOME}/local",'))
        assert 'LOCAL_CODE                =>  "$ENV{HOME}/local"' in rc.read_text(), "gitolite.rc changed"
        keydir = self.home / ".gitolite" / "keydir"
        for name in users:
            shutil.copy(f"{self.keys[name]}.pub", keydir / f"{name}.pub")
        (self.home / ".gitolite" / "conf" / "gitolite.conf").write_text(self.CONF.format(admin=admin))
        (self.local_code / "hooks" / "common").mkdir(parents=True, exist_ok=True)
        chown_tree(self.home, self.account)
        self.compile()
        return self

    def compile(self) -> None:
        """What a push to gitolite-admin does: compile the conf, write keys, link hooks."""
        chown_tree(self.home, self.account)
        self.as_git("gitolite", "setup")

    def url(self, path: str) -> str:
        return self.ssh.url(self.user, path)

    def ssh_command(self, who: str) -> str:
        return self.ssh.ssh_command(self.keys[who])


GITEA_CHAIN = """#!/usr/bin/env bash
# AUTO GENERATED BY GITEA, DO NOT MODIFY
data=$(cat)
exitcodes=""
hookname=$(basename $0)
GIT_DIR=${GIT_DIR:-$(dirname $0)/..}

for hook in ${GIT_DIR}/hooks/${hookname}.d/*; do
  test -x "${hook}" && test -f "${hook}" || continue
  echo "${data}" | "${hook}"
  exitcodes="${exitcodes} $?"
done

for i in ${exitcodes}; do
  [ ${i} -eq 0 ] || exit ${i}
done
"""

# Gitaly runs custom_hooks/<hook>.d/* in order with the same stdin and stops at the first
# failure; GitLab's variables come from the push (GL_ID, GL_USERNAME, GL_PROJECT_PATH...).
GITALY_CHAIN = """#!/usr/bin/env bash
data=$(cat)
hookname=$(basename $0)
GIT_DIR=${GIT_DIR:-$(dirname $0)/..}
for hook in $(ls -1 "${GIT_DIR}/custom_hooks/${hookname}.d" 2>/dev/null | sort); do
  path="${GIT_DIR}/custom_hooks/${hookname}.d/${hook}"
  case "$hook" in *~) continue;; esac
  test -x "$path" && test -f "$path" || continue
  printf '%s\\n' "${data}" | "$path" || exit $?
done
"""


def gitea_repo(bare: Path) -> None:
    """Give a bare repo the hooks Gitea writes: each hook runs every script in `<hook>.d/`."""
    for hook in ("pre-receive", "update", "post-receive"):
        path = bare / "hooks" / hook
        path.write_text(GITEA_CHAIN)
        path.chmod(0o755)
        (bare / "hooks" / f"{hook}.d").mkdir(mode=0o755, exist_ok=True)


def gitlab_repo(bare: Path) -> None:
    """Give a bare repo the hooks Gitaly runs: `custom_hooks/<hook>.d/*`."""
    for hook in ("pre-receive", "post-receive"):
        path = bare / "hooks" / hook
        path.write_text(GITALY_CHAIN)
        path.chmod(0o755)
        (bare / "custom_hooks" / f"{hook}.d").mkdir(parents=True, exist_ok=True)


def gitea_env(pusher: str, owner: str, name: str) -> dict:
    """What Gitea's `serv` sets for a push (pusher and repository of the push)."""
    return {"GITEA_PUSHER_NAME": pusher, "GITEA_PUSHER_ID": "2", "GITEA_PUSHER_EMAIL": f"{pusher}@example.com",
            "GITEA_REPO_USER_NAME": owner, "GITEA_REPO_NAME": name, "GITEA_REPO_ID": "7",
            "GITEA_REPO_IS_WIKI": "false", "GITEA_IS_INTERNAL": "false", "GITEA_PR_ID": "0",
            "GITEA_ROOT_URL": "http://localhost:3000/"}


def gitlab_env(user: str, project: str) -> dict:
    """What Gitaly passes to custom hooks for a push."""
    return {"GL_ID": "user-5", "GL_USERNAME": user, "GL_PROJECT_PATH": project,
            "GL_REPOSITORY": "project-12", "GL_PROTOCOL": "ssh"}


def python_for_git_users(dest: Path) -> str:
    """A python that unprivileged git accounts can run, with this checkout's packages.

    The test venv may sit on an interpreter under a root-only folder (pyenv in /root): then
    make a venv from the system python of the same version that reads the venv's packages.
    """
    if run(["runuser", "-u", "nobody", "--", sys.executable, "-c", "import spacehooks"], check=False).returncode == 0:
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(f"python{version}", path="/usr/bin:/usr/local/bin")
    if system is None:
        raise RuntimeError(f"{sys.executable} is not usable by other users and there is no system python{version}")
    run([system, "-m", "venv", "--without-pip", dest])
    purelib = sysconfig.get_paths()["purelib"]
    site_dir = Path(run([dest / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site_dir / "spacehooks-test-venv.pth").write_text(f"import site; site.addsitedir({purelib!r})\n")
    for root, dirs, files in os.walk(dest):
        for name in dirs + files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o055 if name in dirs else os.stat(path).st_mode | 0o044)
    dest.chmod(0o755)
    python = str(dest / "bin" / "python")
    run(["runuser", "-u", "nobody", "--", python, "-c", "import spacehooks, pygit2"])
    return python
