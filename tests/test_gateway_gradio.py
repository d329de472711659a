"""A real gradio Space behind the gateway: its own Python client (queue over server-sent events)
and its page in Chromium, the app rendered inside the Space page's iframe."""
import socket
import uuid

import pytest
from gradio_client import Client
from playwright.sync_api import expect

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import GatewayUnderTest, shot
from helpers import push

# packages.txt and requirements.txt are those of test_engine_python.py's gradio Space, so this
# build takes its apt, pip and gradio layers from Podman's cache instead of installing them again.
README = "---\ntitle: Reverse\nemoji: 🔁\ncolorFrom: indigo\ncolorTo: purple\nsdk: gradio\nsdk_version: 5.49.1\napp_file: app.py\n---\n"
APP = ("import gradio as gr\n\n"
       "gr.Interface(fn=lambda x: x[::-1], inputs=gr.Textbox(label='Say something'), outputs='text').launch()\n")
DEPS = {"requirements.txt": "six==1.16.0\n", "packages.txt": "# a tool for JSON\njq\n"}


@pytest.fixture
def localhost_names(monkeypatch):
    """Resolve `*.localhost` to loopback, as browsers do (RFC 6761); glibc here does not."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def gradio_gw(engine, loops):
    # a fresh comment keeps the app layer from an earlier test run out of the cache
    files = {"README.md": README, "app.py": f"# {uuid.uuid4()}\n" + APP, **DEPS}
    bare, work = engine.create("alice/reverse", files)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    space = engine.space("alice/reverse")
    assert space["stage"] == "RUNNING", space
    gw = GatewayUnderTest(engine, loops)
    yield gw
    gw.stop()


def test_gradio_client_predicts_through_the_gateway(gradio_gw, localhost_names, page):
    gw = gradio_gw
    client = Client(gw.space_url("alice/reverse") + "/", verbose=False, download_files=False)
    assert client.predict("hello gateway", api_name="/predict") == "yawetag olleh"
    # a queued job: status updates and the result arrive as a stream of server-sent events
    job = client.submit("streamed", api_name="/predict")
    assert job.result(timeout=60) == "demaerts"
    assert job.status().code.name == "FINISHED"

    page.goto(f"http://localhost:{gw.port}/spaces/alice/reverse")
    assert page.locator("#stage").inner_text() == "Running"
    app = page.frame_locator("iframe#app")
    app.get_by_label("Say something").fill("in the page", timeout=30000)
    app.get_by_role("button", name="Submit").click()
    # the answer comes back over the same queue, through the gateway, into the iframe
    expect(app.get_by_label("output")).to_have_value("egap eht ni", timeout=30000)
    page.wait_for_timeout(1000)  # gradio fades the answer in; the screenshot should show it settled
    shot(page, "space-gradio")
