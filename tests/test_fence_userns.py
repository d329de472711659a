"""Container users are not host users: a Space's uid 1000 is, on the host, an id in the
`containers` subordinate range that no account has, so the host's own uid 1000 can neither
read the Space's environment (its secrets) nor signal its processes. Real pushes, real
containers started by spacehooks' run path."""
import json
import os
import pwd
import subprocess
import urllib.request
import uuid

import pytest

from helpers import push

SECRET_APP = ("import http.server\n"
              "class H(http.server.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n"
              "        try:\n"
              "            body = open('/home/user/app/.streamlit/secrets.toml', 'rb').read()\n"
              "        except OSError as exc:\n"
              "            body = repr(exc).encode()\n"
              "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
              "http.server.HTTPServer(('0.0.0.0', {port}), H).serve_forever()\n")


def dockerfile(port: int) -> str:
    return ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\nCOPY --chown=1000:1000 . .\n"
            'CMD ["python", "app.py"]\n')


def readme(port: int) -> str:
    return f"---\ntitle: Users\nsdk: docker\napp_port: {port}\nstartup_duration_timeout: 30s\n---\n"


@pytest.fixture
def host_user_1000():
    """The host account with uid 1000 (made for the test when the machine has none)."""
    try:
        yield pwd.getpwuid(1000)
        return
    except KeyError:
        pass
    subprocess.run(["useradd", "--uid", "1000", "--no-create-home", "--user-group", "shfence"], check=True)
    try:
        yield pwd.getpwuid(1000)
    finally:
        subprocess.run(["userdel", "shfence"], check=False)


def deploy(engine, space_id, files, secrets):
    from spacehooks.admin import spaces as admin
    bare, work = engine.create(space_id, files)
    for key, value in secrets.items():
        admin.secret_set(engine.settings, space_id, key, value)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    space = engine.space(space_id)
    assert space["stage"] == "RUNNING", space["error"]
    return space


def host_ids(name: str) -> tuple[int, list[int]]:
    """The container's main process on the host: its pid and its real/effective/saved/fs uids."""
    inspect = json.loads(subprocess.run(["podman", "inspect", name], capture_output=True, check=True).stdout)[0]
    pid = inspect["State"]["Pid"]
    status = open(f"/proc/{pid}/status").read()
    uids = [int(x) for x in status.split("\nUid:")[1].split("\n")[0].split()]
    return pid, uids


def as_user(user: pwd.struct_passwd, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *command],
                          capture_output=True, text=True)


def test_host_uid_1000_can_neither_read_a_spaces_secrets_nor_signal_it(engine, host_user_1000):
    secret = f"s3cret-{uuid.uuid4().hex}"
    space = deploy(engine, "alice/users", {"README.md": readme(8000), "Dockerfile": dockerfile(8000),
                                            "app.py": SECRET_APP.replace("{port}", "8000")}, {"API_TOKEN": secret})
    name = space["container"]
    inside = subprocess.run(["podman", "exec", name, "id", "-u"], capture_output=True, text=True, check=True).stdout
    assert inside.strip() == "1000"
    pid, uids = host_ids(name)
    # the app (under the init process) runs as the same mapped id
    children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    app_uids = [int(x) for x in open(f"/proc/{children[0]}/status").read().split("\nUid:")[1].split("\n")[0].split()]
    assert len(set(uids + app_uids)) == 1
    host_uid = uids[0]
    assert host_uid != 1000
    with pytest.raises(KeyError):
        pwd.getpwuid(host_uid)  # no account on the host has it
    # the secret is in the app's environment (root sees it) ...
    assert f"API_TOKEN={secret}".encode() in open(f"/proc/{children[0]}/environ", "rb").read()
    # ... and the host's uid 1000 can read it from neither process, nor signal them
    for target in (pid, int(children[0])):
        read = as_user(host_user_1000, "cat", f"/proc/{target}/environ")
        assert read.returncode != 0 and "Permission denied" in read.stderr and secret not in read.stdout
        signal = as_user(host_user_1000, "kill", "-0", str(target))
        assert signal.returncode != 0 and "Operation not permitted" in signal.stderr


def test_streamlit_secrets_file_belongs_to_the_spaces_mapped_id(engine):
    from spacehooks.run import runner
    secret = f"s3cret-{uuid.uuid4().hex}"
    space = deploy(engine, "alice/lit", {"README.md": readme(8501), "Dockerfile": dockerfile(8501),
                                          "app.py": SECRET_APP.replace("{port}", "8501")}, {"API_TOKEN": secret})
    # the same image run as a streamlit Space: spacehooks mounts the secrets file for it
    config = {**space["config"], "sdk": "streamlit"}
    runner.deploy(engine.settings, "alice/lit", space["image"], space["build_id"], space["commit"], config)
    space = engine.space("alice/lit")
    assert space["stage"] == "RUNNING", space["error"]
    with urllib.request.urlopen(f"http://127.0.0.1:{space['port']}/", timeout=10) as response:
        assert response.read().decode() == f'API_TOKEN = "{secret}"\n'  # the app reads it
    path = engine.home / "run" / "alice" / "lit" / "secrets.toml"
    _, uids = host_ids(space["container"])
    info = os.stat(path)
    assert (info.st_uid, info.st_mode & 0o777) == (uids[0], 0o400)
    with pytest.raises(KeyError):
        pwd.getpwuid(info.st_uid)
