"""`spacehooks duplicate` (issue 15): the copy has the history, the variables, a README naming
its origin and the hooks; never the secrets; it builds and runs like any pushed Space. Real
repositories, a real push through the copy's hooks, a real container answering HTTP."""
import json
import subprocess
import urllib.request

import pytest

from helpers import git, push, work_repo
from test_storage import unmount_after  # noqa: F401 - autouse: the copy's storage is unmounted after

APP = ("import http.server, json, os\n"
       "class H(http.server.BaseHTTPRequestHandler):\n"
       "    def do_GET(self):\n"
       "        body = {'greeting': os.environ.get('GREETING'), 'token': os.environ.get('API_TOKEN'),\n"
       "                'space': os.environ.get('SPACE_ID')}\n"
       "        self.send_response(200); self.end_headers(); self.wfile.write(json.dumps(body).encode())\n"
       "http.server.HTTPServer(('0.0.0.0', 8000), H).serve_forever()\n")
README = "---\ntitle: Original\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 60s\n---\n# Hello\n"
DOCKERFILE = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\nCOPY --chown=1000:1000 . .\n"
              'CMD ["python", "app.py"]\n')


def app_says(engine, space_id):
    space = engine.space(space_id)
    assert space["stage"] == "RUNNING", (space["stage"], space["error"])
    with urllib.request.urlopen(f"http://127.0.0.1:{space['port']}/", timeout=30) as response:
        return json.loads(response.read())


def test_duplicate_copies_history_variables_and_readme_never_secrets(engine):
    from spacehooks import config, state
    from spacehooks.access import accounts
    from spacehooks.admin import spaces as admin
    from spacehooks.push import spaceconfig
    from spacehooks.admin import duplicate
    engine.configure(hardware={"cpu-basic": {"cpus": 1, "memory_mb": 1024}, "small-box": {"cpus": 1, "memory_mb": 512}},
                     storage={"tiers": {"small": 32}})
    engine.settings = config.load()
    bare, work = engine.create("alice/orig", {"README.md": README, "Dockerfile": DOCKERFILE, "app.py": "print()\n"})
    work_repo(work, {"app.py": APP}, message="second")
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    admin.variable_set(engine.settings, "alice/orig", "GREETING", "hi")
    admin.secret_set(engine.settings, "alice/orig", "API_TOKEN", "s3cret-value-123")
    assert app_says(engine, "alice/orig") == {"greeting": "hi", "token": "s3cret-value-123", "space": "alice/orig"}

    result = duplicate.duplicate(engine.settings, "alice/orig", "bob/copy", hardware="small-box", private=True)
    copy = engine.root / "bob" / "copy.git"
    assert result.to_id == "bob/copy" and result.repo == str(copy)
    assert result.variables == ["GREETING"] and result.secrets_to_set == ["API_TOKEN"]
    # --private is recorded for real (issue 13's private Spaces), in the store and the git account's access file
    assert result.private is True and engine.space("bob/copy")["private"] == 1
    assert "bob/copy" in accounts.read_access_file(engine.settings.home)["private"]
    # the history, plus one commit setting duplicated_from
    log = git("log", "--format=%s", "main", cwd=copy).stdout.split("\n")[:3]
    assert log == ["Duplicate from alice/orig", "second", "initial"]
    assert git("rev-parse", "main", cwd=copy).stdout.strip() == result.commit
    readme = git("show", "main:README.md", cwd=copy).stdout
    assert readme == ("---\ntitle: Original\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 60s\n"
                      "duplicated_from: alice/orig\n---\n# Hello\n")
    parsed = spaceconfig.parse(readme.encode())
    assert parsed.errors == [] and parsed.values["duplicated_from"] == "alice/orig"
    assert (copy / "hooks" / "pre-receive").exists()
    assert state.read_secrets(engine.settings.home, "bob/copy") == {}

    # the push queued its build: it builds and runs like any pushed Space, without the secret
    assert engine.drain() == 1
    assert engine.space("bob/copy")["hardware"] == "small-box"
    assert app_says(engine, "bob/copy") == {"greeting": "hi", "token": None, "space": "bob/copy"}
    assert engine.space("bob/copy")["commit"] == result.commit

    # the copy's hooks gate later pushes: a hard-coded key is refused there as anywhere
    clone = engine.root.parent / "copy-work"
    subprocess.run(["git", "clone", "-q", str(copy), str(clone)], check=True)
    work_repo(clone, {"key.py": "KEY = 'hf_" + "a1B2c3D4e5" * 3 + "abcd'\n"}, message="leak")
    refused = push(clone, str(copy))
    assert refused.returncode != 0 and "looks like a Hugging Face token" in refused.stdout

    # --storage gives the copy empty storage of its own (storage is never copied)
    from spacehooks.run import storage
    from click.testing import CliRunner
    from spacehooks import cli
    env = {"SPACEHOOKS_CONFIG": str(engine.config), "SPACEHOOKS_HOME": str(engine.home)}
    with_data = CliRunner().invoke(cli.cli, ["duplicate", "alice/orig", "carol/copy", "--storage", "small"], env=env)
    assert with_data.exit_code == 0, with_data.output
    assert "  secrets NOT copied; set them: spacehooks secrets set carol/copy API_TOKEN" in with_data.output.splitlines()
    assert "  storage: small (empty; the original's files are not copied)" in with_data.output.splitlines()
    assert storage.record(engine.settings, "carol/copy")["size_mb"] == 32 and engine.space("carol/copy")["private"] == 0
    assert storage.is_mounted(storage.mount_path(engine.settings, "carol/copy"))
    assert engine.drain() == 1
    assert app_says(engine, "carol/copy")["space"] == "carol/copy"

    with pytest.raises(Exception) as exists:
        duplicate.duplicate(engine.settings, "alice/orig", "bob/copy")
    assert exists.value.message == "bob/copy exists already"
    with pytest.raises(Exception) as unknown:
        duplicate.duplicate(engine.settings, "alice/none", "bob/other")
    assert unknown.value.message == "no Space 'alice/none'"
    assert not (engine.root / "bob" / "other.git").exists()


def test_readme_with_origin_replaces_and_adds():
    from spacehooks.admin.duplicate import readme_with_origin
    assert readme_with_origin("---\ntitle: x\nduplicated_from: a/b\n---\nbody\n", "c/d") == \
        "---\ntitle: x\nduplicated_from: c/d\n---\nbody\n"
    assert readme_with_origin("# no header\n", "c/d") == "---\nduplicated_from: c/d\n---\n# no header\n"
