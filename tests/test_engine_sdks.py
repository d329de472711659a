"""Each SDK generation runs unpinned, as Space authors write it for the Hub: gradio 3, 4 and 6
(5 is test_engine_python's and test_gateway_gradio's) and an old and a new streamlit, each built
on the real base image and called through the real gateway. Every gradio Space imports the Hub's
`spaces` package."""
import json
import urllib.request
import uuid

import pytest
from gradio_client import Client

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import GatewayUnderTest
from helpers import push
from spacehooks.push import sdkcompat

GRADIO_APP = ("import gradio as gr\nimport spaces\n\n"
              "@spaces.GPU\ndef predict(x):\n    return x[::-1]\n\n"
              "gr.Interface(predict, 'text', 'text').launch()\n")
STREAMLIT_APP = "import streamlit as st\n\nst.write('hello from streamlit ' + st.__version__)\n"


def readme(sdk, version, app_file):
    return f"---\ntitle: T\nsdk: {sdk}\nsdk_version: {version}\napp_file: {app_file}\n---\n"


def test_sdk_layer_installs_what_each_version_needs():
    assert sdkcompat.requirements("gradio", "3.50.2", "3.11") == [
        "gradio==3.50.2", "huggingface_hub<1", "datasets", "starlette<1", "spaces"]
    assert sdkcompat.requirements("gradio", "4.44.1", "3.10") == [
        "gradio==4.44.1", "huggingface_hub<1", "datasets", "starlette<1", "spaces"]
    assert sdkcompat.requirements("gradio", "5.49.1", "3.11") == ["gradio==5.49.1", "spaces"]
    assert sdkcompat.requirements("gradio", None, None) == ["gradio", "spaces"]
    # `spaces` needs Python 3.10: older Pythons get gradio alone
    assert sdkcompat.requirements("gradio", "4.44.1", "3.9") == [
        "gradio==4.44.1", "huggingface_hub<1", "datasets", "starlette<1"]
    assert sdkcompat.requirements("streamlit", "1.10.0", "3.11") == [
        "streamlit==1.10.0", "altair<5", "protobuf<4", "numpy<2", "pyarrow<15"]
    assert sdkcompat.requirements("streamlit", "1.67.0", "3.11") == ["streamlit==1.67.0"]
    # a real Space (Oncorporation/BattleWords, streamlit 1.25.0) crashed at start: streamlit pinned
    # numpy<2 and the base image's pyarrow 26 refused to import with numpy 1
    assert sdkcompat.requirements("streamlit", "1.25.0", "3.11") == [
        "streamlit==1.25.0", "numpy<2", "pyarrow<19", "datasets"]
    assert sdkcompat.requirements("streamlit", "1.36.0", "3.11") == ["streamlit==1.36.0"]


def _space(engine, loops, space_id, files):
    bare, work = engine.create(space_id, files)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    space = engine.space(space_id)
    logs = sorted((engine.home / "logs" / "builds" / space_id).glob("*.log"))
    assert space["stage"] == "RUNNING", (space["error"], logs and logs[-1].read_text()[-3000:])
    return GatewayUnderTest(engine, loops)


@pytest.mark.parametrize("version", ["4.44.1", "6.31.0"])
def test_gradio_generation_runs_unpinned_and_predicts_through_the_gateway(engine, loops, version):
    space_id = f"sdk/gradio{version.split('.')[0]}"
    gw = _space(engine, loops, space_id, {"README.md": readme("gradio", version, "app.py"),
                                          "app.py": f"# {uuid.uuid4()}\n" + GRADIO_APP})
    try:
        client = Client(gw.url + "/", headers={"Host": gw.host(space_id)}, verbose=False,
                        download_files=False)
        assert client.predict("unpinned", api_name="/predict") == "dennipnu"
    finally:
        gw.stop()


def test_gradio_3_runs_unpinned_and_answers_its_own_api_through_the_gateway(engine, loops):
    # gradio_client 1.x and newer speak to gradio 4 and later only: gradio 3's HTTP API instead
    space_id = "sdk/gradio3"
    gw = _space(engine, loops, space_id, {"README.md": readme("gradio", "3.50.2", "app.py"),
                                          "app.py": f"# {uuid.uuid4()}\n" + GRADIO_APP})
    try:
        request = urllib.request.Request(gw.url + "/run/predict", data=json.dumps({"data": ["three"]}).encode(),
                                         headers={"Host": gw.host(space_id), "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert json.loads(response.read())["data"] == ["eerht"]
    finally:
        gw.stop()


@pytest.mark.parametrize("version", ["1.10.0", "1.25.0", "1.67.0"])
def test_streamlit_old_and_new_run_unpinned_through_the_gateway(engine, loops, version):
    space_id = f"sdk/streamlit{version.replace('.', '-')}"
    gw = _space(engine, loops, space_id, {"README.md": readme("streamlit", version, "main.py"),
                                          "main.py": f"# {uuid.uuid4()}\n" + STREAMLIT_APP})
    try:
        request = urllib.request.Request(gw.url + "/", headers={"Host": gw.host(space_id)})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            assert b"<title>Streamlit</title>" in response.read()
        # streamlit's own health check moved in 1.18 (/healthz -> /_stcore/health)
        health = "/healthz" if version.startswith("1.10") else "/_stcore/health"
        request = urllib.request.Request(gw.url + health, headers={"Host": gw.host(space_id)})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.read() == b"ok"
    finally:
        gw.stop()
