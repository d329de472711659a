"""Gradio and Streamlit Spaces built in layers on the real base image, pushed with real git."""
import subprocess
import threading
import urllib.request
import uuid

import pytest

from helpers import git, push, write_files

GRADIO = "---\ntitle: Echo\nsdk: gradio\nsdk_version: 5.49.1\napp_file: app.py\n---\n"
GRADIO_APP = "import gradio as gr\n\ngr.Interface(lambda x: x, 'text', 'text').launch()\n"
STREAMLIT = "---\ntitle: Lit\nsdk: streamlit\nsdk_version: 1.39.0\napp_file: main.py\n---\n"
STREAMLIT_APP = "import streamlit as st\n\nst.write('hello ' + st.secrets['GREETING'][:2])\n"


def get(port, path="/"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status


def podman(*args):
    return subprocess.run(["podman", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout


def remote(result):
    return [line.removeprefix("remote: ").rstrip() for line in result.stdout.splitlines() if line.startswith("remote: ")]


@pytest.fixture
def worker(engine):
    from spacehooks.run.worker import Worker
    stop = threading.Event()
    thread = threading.Thread(target=Worker(engine.settings).run, args=(stop,), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=120)


def build_log(engine, space_id, build_id):
    return (engine.home / "logs" / "builds" / space_id / f"{build_id}.log").read_text()


def steps_after(log, marker):
    """For each build step whose instruction contains marker: was it taken from the cache?"""
    lines = log.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith("STEP ") and marker in line:
            following = next(l for l in lines[i + 1:] if l.startswith("--> ") or l.startswith("STEP "))
            out.append(following.startswith("--> Using cache"))
    return out


def test_gradio_space_layers_cache_and_failed_build(engine, worker):
    # a fresh comment keeps the app layer from an earlier test run out of the cache
    files = {"README.md": GRADIO, "app.py": f"# {uuid.uuid4()}\n" + GRADIO_APP, "requirements.txt": "six==1.16.0\n",
             "packages.txt": "# a tool for JSON\njq\n"}
    bare, work = engine.create("bob/echo", files)
    result = push(work, str(bare), "main", "wait")
    lines = remote(result)
    assert "-----> Build #1 queued for bob/echo at " + git("rev-parse", "HEAD", cwd=work).stdout[:12] in lines
    assert "-----> Build #1 deployed: bob/echo is RUNNING" in lines, result.stdout
    assert any(line.startswith("       STEP ") for line in lines)
    space = engine.space("bob/echo")
    assert space["stage"] == "RUNNING" and get(space["port"]) == 200
    name = space["container"]
    assert podman("exec", name, "jq", "--version").startswith("jq-1.6")
    assert podman("exec", name, "python", "-c", "import six, gradio; print(six.__version__, gradio.__version__)") == "1.16.0 5.49.1\n"
    # the Hub's `spaces` package comes with the SDK, beside the one gradio (not a second one)
    assert podman("exec", name, "python", "-c", "import spaces, gradio; print(gradio.__version__)") == "5.49.1\n"
    assert podman("exec", name, "stat", "-c", "%u %n", "app.py") == "1000 app.py\n"
    assert podman("exec", name, "id", "-u") == "1000\n"
    env = podman("exec", name, "env")
    assert "GRADIO_SERVER_NAME=0.0.0.0\n" in env and "SPACE_ID=bob/echo\n" in env

    # a code-only push runs no apt or pip step again
    write_files(work, {"app.py": f"# {uuid.uuid4()}\n" + GRADIO_APP.replace("'text', 'text'", "'text', 'textbox'")})
    git("commit", "-qam", "code", cwd=work)
    result = push(work, str(bare), "main", "wait")
    assert "-----> Build #2 deployed: bob/echo is RUNNING" in remote(result), result.stdout
    log = build_log(engine, "bob/echo", 2)
    assert steps_after(log, "apt-get") == [True]
    assert steps_after(log, "pip install") == [True, True]
    assert steps_after(log, "COPY --chown=1000:1000 app/") == [False]
    assert "Layers from cache: " in log
    second = engine.space("bob/echo")
    assert second["build_id"] == 2 and get(second["port"]) == 200

    # a broken requirement fails the build; the running version keeps answering
    write_files(work, {"requirements.txt": "six==1.16.0\nno-such-package-spacehooks-test==0.0.1\n"})
    git("commit", "-qam", "broken", cwd=work)
    result = push(work, str(bare), "main", "wait")
    assert any(line.startswith(" !     Build #3 failed: ") for line in remote(result)), result.stdout
    space = engine.space("bob/echo")
    assert (space["stage"], space["build_id"], space["port"]) == ("RUNNING", 2, second["port"])
    assert space["error"].startswith("build #3 failed: ")
    assert get(space["port"]) == 200
    assert "BUILD_ERROR: " in build_log(engine, "bob/echo", 3)


def test_streamlit_space_reads_its_secret_from_env_and_secrets_file(engine, worker):
    from spacehooks.admin import spaces as admin
    bare, work = engine.create("bob/lit", {"README.md": STREAMLIT, "main.py": STREAMLIT_APP})
    admin.secret_set(engine.settings, "bob/lit", "GREETING", "hi-there")
    result = push(work, str(bare), "main", "wait")
    assert "-----> Build #1 deployed: bob/lit is RUNNING" in remote(result), result.stdout
    space = engine.space("bob/lit")
    assert get(space["port"]) == 200
    name = space["container"]
    assert podman("exec", name, "python", "-c", "import streamlit as st; print(st.secrets['GREETING'])") == "hi-there\n"
    assert podman("exec", name, "printenv", "GREETING") == "hi-there\n"
    mounts = podman("inspect", name, "--format", "{{range .Mounts}}{{.Destination}} {{.RW}}{{end}}")
    assert mounts.strip() == "/home/user/app/.streamlit/secrets.toml false"
    assert "hi-there" not in podman("history", "--no-trunc", space["image"])
    # changing a secret restarts the Space with the new value
    admin.secret_set(engine.settings, "bob/lit", "GREETING", "changed")
    space = engine.space("bob/lit")
    assert space["container"] != name and space["stage"] == "RUNNING"
    assert podman("exec", space["container"], "printenv", "GREETING") == "changed\n"


def test_requirements_naming_other_files_are_built_and_cached_on_their_content(engine, worker):
    files = {"README.md": GRADIO, "app.py": GRADIO_APP, "requirements.txt": "-r reqs/base.txt\n-c constraints.txt\n",
             "reqs/base.txt": "--requirement ../more.txt\n", "constraints.txt": "six==1.16.0\n",
             # a fresh comment keeps layers of an earlier test run out of the cache
             "more.txt": f"# {uuid.uuid4()}\nsix\n"}
    bare, work = engine.create("bob/nested", files)
    result = push(work, str(bare), "main", "wait")
    assert "-----> Build #1 deployed: bob/nested is RUNNING" in remote(result), result.stdout
    space = engine.space("bob/nested")
    assert podman("exec", space["container"], "python", "-c", "import six; print(six.__version__)") == "1.16.0\n"
    # only the constraints file changes: the requirements layer is built again, not taken from the cache
    write_files(work, {"constraints.txt": "six==1.15.0\n"})
    git("commit", "-qam", "older six", cwd=work)
    result = push(work, str(bare), "main", "wait")
    assert "-----> Build #2 deployed: bob/nested is RUNNING" in remote(result), result.stdout
    log = build_log(engine, "bob/nested", 2)
    assert steps_after(log, "-r /tmp/spacehooks/req/requirements.txt") == [False]
    space = engine.space("bob/nested")
    assert podman("exec", space["container"], "python", "-c", "import six; print(six.__version__)") == "1.15.0\n"
    # a code-only change takes the requirements layer from the cache again
    write_files(work, {"app.py": GRADIO_APP + "# changed\n"})
    git("commit", "-qam", "code", cwd=work)
    result = push(work, str(bare), "main", "wait")
    assert "-----> Build #3 deployed: bob/nested is RUNNING" in remote(result), result.stdout
    assert steps_after(build_log(engine, "bob/nested", 3), "-r /tmp/spacehooks/req/requirements.txt") == [True]
