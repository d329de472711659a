"""Spaces written for the Hub pass the gate unchanged: every python_version the Hub accepts,
a readme.md in another case. Real `git push` to bare repositories with the hooks installed."""
import shutil
import subprocess
import sys

import pytest

from helpers import GRADIO_README, bare_repo, git, push, refs_and_objects, work_repo

REJECTED = "Sorry, your push was rejected during Space verification:"
STATIC_README = "---\ntitle: Static\nemoji: 📄\ncolorFrom: red\ncolorTo: pink\nsdk: static\n---\n"
HINT = '(spacehooks README, "Compatibility with the Hub")'


def remote_lines(result):
    return [line.removeprefix("remote: ").rstrip() for line in result.stdout.splitlines()
            if line.startswith("remote: ")]


def alerts(result):
    # the gate's alerts; post-receive's note that no worker runs (gate tests run none) is not one
    return [line.removeprefix(" !     ") for line in remote_lines(result)
            if line.startswith(" !     ") and not line.startswith(" !     no build worker is running")]


@pytest.fixture
def space(server, tmp_path):
    bare = bare_repo(server.root, "alice/demo")
    subprocess.run([sys.executable, "-m", "spacehooks", "install", str(bare)], check=True)
    return bare


def _readme(version_line: str) -> str:
    return GRADIO_README.replace("sdk_version", f"{version_line}\nsdk_version")


def _push_version(work, space, version_line, n):
    work_repo(work, {"README.md": _readme(version_line), "app.py": "print(1)\n"}, f"v{n}")
    return push(work, str(space))


def _fallback(wanted, served):
    return (f'warning: README.md:7: "python_version" {wanted} is not on this server: the Space runs on python '
            f"{served}, the nearest it has; an administrator can add {'.'.join(wanted.split('.')[:2])} {HINT}")


def test_every_hub_python_version_is_served_by_the_nearest_with_a_warning(server, space, tmp_path):
    """Default server (3.11 only): each Hub value passes, warned, naming what it gets."""
    work = tmp_path / "w"
    cases = [("python_version: 3.10", "3.10", "3.11"), ('python_version: "3.10.10"', "3.10.10", "3.11"),
             ("python_version: '3.13'", "3.13", "3.11"), ("python_version: 3.8", "3.8", "3.11"),
             ("python_version: 3.9.18", "3.9.18", "3.11"), ("python_version: 3.12", "3.12", "3.11")]
    for n, (line, wanted, served) in enumerate(cases):
        result = _push_version(work, space, line, n)
        assert result.returncode == 0, result.stdout
        assert alerts(result) == [_fallback(wanted, served)], (line, result.stdout)
        assert git("rev-parse", "main", cwd=space).stdout == git("rev-parse", "HEAD", cwd=work).stdout
    # its own minor: no warning, whatever the patch level or quoting
    for n, line in enumerate(["python_version: 3.11", "python_version: '3.11.4'", 'python_version: "3.11"']):
        result = _push_version(work, space, line, 10 + n)
        assert result.returncode == 0, result.stdout
        assert alerts(result) == [], (line, result.stdout)
        assert "all checks passed" in result.stdout


def test_nearest_prefers_the_newer_of_two_equally_near(server, space, tmp_path):
    server.configure(python_versions={"3.9": "localhost/spacehooks/python:3.9", "3.11": "localhost/spacehooks/python:3.11",
                                      "3.13": "localhost/spacehooks/python:3.13"})
    work = tmp_path / "w"
    for n, (wanted, served) in enumerate([("3.10", "3.11"), ("3.12", "3.13"), ("3.8", "3.9"), ("3.10.10", "3.11")]):
        result = _push_version(work, space, f"python_version: {wanted}", n)
        assert result.returncode == 0, result.stdout
        assert alerts(result) == [_fallback(wanted, served)], result.stdout
    for n, wanted in enumerate(["3.9", "3.13.1", "3.11"]):
        result = _push_version(work, space, f"python_version: {wanted}", 10 + n)
        assert (result.returncode, alerts(result)) == (0, []), result.stdout


def test_refuse_policy_refuses_a_missing_version_and_nothing_lands(server, space, tmp_path):
    server.configure(python_version_fallback="refuse")
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "print(1)\n"})
    assert push(work, str(space)).returncode == 0
    before = refs_and_objects(space)
    result = _push_version(work, space, "python_version: 3.10", 1)
    assert result.returncode != 0
    assert alerts(result) == [REJECTED, 'README.md:7: "python_version" 3.10 is not available on this server; it provides [3.11]']
    assert refs_and_objects(space) == before
    result = _push_version(work, space, "python_version: 3.11.9", 2)
    assert (result.returncode, alerts(result)) == (0, []), result.stdout


def test_a_wrong_fallback_setting_fails_closed(server, space, tmp_path):
    server.configure(python_version_fallback="closest")
    result = _push_version(tmp_path / "w", space, "python_version: 3.10", 1)
    assert result.returncode != 0
    assert alerts(result) == ["Sorry, your push was rejected: python_version_fallback must be one of nearest, refuse "
                              "(found 'closest')", "  fix: fix it in the server config"]


def test_the_build_uses_the_image_the_push_was_told(server):
    """The builder chooses through the same rule: the FROM line is the warned-about image."""
    from spacehooks import config
    from spacehooks.build import builder
    server.configure(python_versions={"3.9": "img-39", "3.11": "img-311", "3.13": "img-313"})
    settings = config.load(server.config, server.home)
    for wanted, image in [("3.10", "img-311"), ("3.12", "img-313"), ("3.8", "img-39"), ("3.9.2", "img-39"), (None, "img-311")]:
        cfg = {"sdk": "gradio", "python_version": wanted} if wanted else {"sdk": "gradio"}
        assert builder.containerfile(settings, cfg, {}, "alice/py").splitlines()[0] == f"FROM {image}", wanted
    server.configure(python_version_fallback="refuse")
    settings = config.load(server.config, server.home)
    from spacehooks.errors import SpaceError
    with pytest.raises(SpaceError) as refused:
        builder.containerfile(settings, {"sdk": "gradio", "python_version": "3.10"}, {}, "alice/py")
    assert refused.value.message == "python_version 3.10 is not available on this server (available: 3.9, 3.11, 3.13)"


def test_a_lower_case_readme_is_read_as_on_the_hub(server, space, tmp_path):
    work = work_repo(tmp_path / "w", {"readme.md": GRADIO_README.replace("colorFrom: blue", "colorFrom: orange"),
                                      "app.py": "print(1)\n"})
    before = refs_and_objects(space)
    refused = push(work, str(space))
    # the checks ran on readme.md: its problems carry its name
    assert refused.returncode != 0
    assert alerts(refused) == [REJECTED, 'readme.md:4: "colorFrom" must be one of [red, yellow, green, blue, indigo, '
                                         'purple, pink, gray] (found "orange")']
    assert refs_and_objects(space) == before
    work_repo(work, {"readme.md": GRADIO_README}, "fixed")
    result = push(work, str(space))
    assert result.returncode == 0, result.stdout
    assert "       sdk gradio 4.44.1, app app.py: all checks passed" in remote_lines(result)
    # post-receive reads the same file: the queued build knows the Space's settings
    from spacehooks.queue import jobs as queue
    head = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    values, stage, error = queue.read_config(space, head)
    assert (values["sdk"], values["sdk_version"], stage, error) == ("gradio", "4.44.1", None, None)


def test_readme_case_variants_and_which_wins(server, space, tmp_path):
    work = work_repo(tmp_path / "w", {"Readme.md": STATIC_README, "index.html": "<p>hi</p>\n"})
    result = push(work, str(space))
    assert result.returncode == 0, result.stdout
    assert "       sdk static, app index.html: all checks passed" in remote_lines(result)
    # README.md exists beside a variant: README.md is the one read (here: a broken one)
    work_repo(work, {"README.md": "no yaml\n", "README.MD": STATIC_README}, "both")
    refused = push(work, str(space))
    assert refused.returncode != 0
    assert alerts(refused)[1].startswith("README.md: "), refused.stdout
    # a folder named readme.md is no README
    work_repo(work, {"README.md": None, "Readme.md": None, "README.MD": None, "readme.md/x": "x\n"}, "folder")
    refused = push(work, str(space))
    assert alerts(refused) == [REJECTED, "readme.md: must be a regular file (found a symlink or folder)"]
    # and `validate` (a working copy) reads the same way
    shutil.rmtree(work / "readme.md")
    work_repo(work, {"readme.md": STATIC_README}, "file again")
    checked = subprocess.run([sys.executable, "-m", "spacehooks", "validate", str(work)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    assert checked.returncode == 0, checked.stdout
    assert "       sdk static, app index.html: all checks passed" in checked.stdout.splitlines()


NOTEBOOK = ('{"cells": [{"cell_type": "code", "outputs": [{"data": {"text/html": ['
            '"<style>#sk-container-id-1 label.sk-toggleable__label-arrow:before {content: \\"▸\\";}</style>",'
            '"<div class=\\"sk-item\\"><label class=\\"sk-toggleable__label sk-toggleable__label-arrow\\">SVC</label>"'
            ']}}], "source": ["model"]}], "nbformat": 4}\n')
ENV_EXAMPLE = ("ANTHROPIC_API_KEY=sk-ant-YOUR_ANTHROPIC_API_KEY\nOPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxx\n"
               "HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nGITHUB_TOKEN=<your-token>\n"
               "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n")
# drawn at random for this test, never issued: the structure of a real token
KEY = "hf_" + "Qm7Zt2XvK9pLr4WbN8sYc3DjH6fGa1UeT5"


def _fingerprint(result):
    line = next(a for a in alerts(result) if "secret-ok=" in a)
    return line.rsplit("secret-ok=", 1)[1]


def test_placeholders_and_notebook_look_alikes_pass_real_keys_do_not(server, space, tmp_path):
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "print(1)\n",
                                      "demo.ipynb": NOTEBOOK, ".env.example": ENV_EXAMPLE})
    result = push(work, str(space))
    assert (result.returncode, alerts(result)) == (0, []), result.stdout
    before = refs_and_objects(space)
    work_repo(work, {"app.py": f"TOKEN = '{KEY}'\n"}, "key")
    refused = push(work, str(space))
    assert refused.returncode != 0
    fp = _fingerprint(refused)
    assert len(fp) == 12 and int(fp, 16) >= 0
    assert alerts(refused) == [
        REJECTED,
        "app.py:1: looks like a Hugging Face token (hf_Qm7…); remove it from every commit of the push and store it "
        "on the server instead: spacehooks secrets set alice/demo NAME; if it is no secret, confirm this one "
        f"finding: git push -o secret-ok={fp}"]
    assert refs_and_objects(space) == before


def test_a_pusher_confirms_one_finding_by_its_fingerprint_and_it_is_recorded(server, space, tmp_path):
    import json
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "print(1)\n"})
    assert push(work, str(space)).returncode == 0
    other = "ghp_" + "r8Kd2LmQ7vXz4NcB9tWy3HpJ6sFa5GeU1iOo"
    work_repo(work, {"app.py": f"TOKEN = '{KEY}'\n", "tests/data.py": f"FIXTURE = '{other}'\n"}, "keys")
    refused = push(work, str(space))
    found = [a for a in alerts(refused) if "secret-ok=" in a]
    assert [a.split(":")[0] for a in found] == ["app.py", "tests/data.py"]
    fp_app, fp_data = (a.rsplit("secret-ok=", 1)[1] for a in found)
    before = refs_and_objects(space)
    # one confirmation covers one finding only: the other still refuses the push, nothing is recorded
    half = push(work, str(space), "main", f"secret-ok={fp_data}")
    assert half.returncode != 0
    assert [a.split(":")[0] for a in alerts(half) if "secret-ok=" in a and not a.startswith("warning")] == ["app.py"]
    assert refs_and_objects(space) == before
    assert not (server.home / "secret-ok.log").exists()
    # a fingerprint of another push confirms nothing and says so
    stray = push(work, str(space), "main", f"secret-ok={fp_data}", f"secret-ok={fp_app},0123456789ab",
                 "secret-ok=\x1b[2J<b>")
    assert stray.returncode == 0, stray.stdout
    assert alerts(stray) == [
        f"warning: app.py:1: a Hugging Face token (hf_Qm7…) accepted as no secret: secret-ok={fp_app} given by root",
        f"warning: tests/data.py:1: a GitHub token (ghp_r8…) accepted as no secret: secret-ok={fp_data} given by root",
        "warning: secret-ok=(not 12 hex digits) matches no finding of this push; it confirmed nothing",
        "warning: secret-ok=0123456789ab matches no finding of this push; it confirmed nothing"]
    records = [json.loads(line) for line in (server.home / "secret-ok.log").read_text().splitlines()]
    assert [{k: r[k] for k in ("space", "pusher", "fingerprint", "path", "line", "kind")} for r in records] == [
        {"space": "alice/demo", "pusher": "root", "fingerprint": fp_app, "path": "app.py", "line": 1,
         "kind": "a Hugging Face token"},
        {"space": "alice/demo", "pusher": "root", "fingerprint": fp_data, "path": "tests/data.py", "line": 1,
         "kind": "a GitHub token"}]
    assert KEY not in (server.home / "secret-ok.log").read_text()
    # the same key in another file is another finding: confirmed anew, or refused
    work_repo(work, {"config.py": f"T = '{KEY}'\n"}, "again")
    again = push(work, str(space))
    assert again.returncode != 0
    assert [a.split(":")[0] for a in alerts(again) if "secret-ok=" in a] == ["config.py"]
