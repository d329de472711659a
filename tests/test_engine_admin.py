"""Admin commands through the real CLI: secrets, variables, spaces, status, doctor."""
import stat
import subprocess
import sys

from helpers import push

STATIC_README = "---\ntitle: Static\nsdk: static\n---\n"


def cli(*args, input=None):
    return subprocess.run([sys.executable, "-m", "spacehooks", *args], input=input, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_secrets_are_private_files_and_list_shows_names_only(engine):
    assert cli("secrets", "set", "carol/app", "API_KEY", input="v4lue-123\n").returncode == 0
    path = engine.home / "secrets" / "carol" / "app" / "API_KEY"
    assert path.read_text() == "v4lue-123"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    listing = cli("secrets", "list", "carol/app")
    assert listing.stdout == "API_KEY\n"
    bad = cli("secrets", "delete", "carol/app", "NOPE")
    assert bad.returncode == 1
    assert bad.stdout == ("Error: carol/app has no secret NOPE\n"
                          "  fix: see `spacehooks secrets list carol/app`\n")
    assert cli("secrets", "delete", "carol/app", "API_KEY").returncode == 0
    assert not path.exists()


def test_variables_spaces_and_status(engine):
    bare, work = engine.create("carol/page", {"README.md": STATIC_README, "index.html": "hi\n"})
    assert push(work, str(bare)).returncode == 0
    engine.drain()
    assert cli("variables", "set", "carol/page", "MODE", "fast").stdout == "variable MODE set for carol/page\n"
    assert cli("variables", "list", "carol/page").stdout == "MODE=fast\n"
    lines = cli("spaces").stdout.splitlines()
    assert lines[1].split()[:2] == ["carol/page", "RUNNING"]
    status = cli("status", "carol/page").stdout
    assert "stage:     RUNNING\n" in status and "build #1: succeeded " in status
    missing = cli("status", "carol/none")
    assert missing.stdout == "Error: no Space 'carol/none'\n  fix: see `spacehooks spaces` for the known Spaces\n"


def test_doctor_reports_a_missing_base_image_with_its_fix(engine):
    engine.configure(python_versions={"3.11": "localhost/spacehooks/python:3.11", "3.9": "localhost/spacehooks/none:3.9"})
    result = cli("doctor")
    assert result.returncode == 1
    assert ("PROBLEM  base image localhost/spacehooks/none:3.9 for python 3.9 is missing\n"
            "  fix: run `spacehooks base-image build`\n") in result.stdout
    assert "ok       Podman service answers at " in result.stdout
