"""gradio_client finds a Space by name through the Hub-compatible API (issue 13): with
HF_ENDPOINT pointing at the gateway, `Client("owner/name")` calls space_info and the runtime,
then predicts at the Space's own address -- here a private Space, reached with a member's
token (gradio_client sends it as x-hf-authorization), and refused without one. The Space is
test_gateway_gradio.py's (same gradio version and files: its build layers are shared)."""
import subprocess
import sys
import time

from gateway_support import *  # noqa: F401,F403 - fixtures
from spacehooks.access import accounts
from test_gateway_gradio import gradio_gw  # noqa: F401 - the fixture

SCRIPT = r"""
import socket, sys
real = socket.getaddrinfo
# *.localhost is loopback (RFC 6761), as browsers resolve it; glibc here does not
socket.getaddrinfo = lambda host, *a, **kw: real("127.0.0.1" if isinstance(host, str) and host.endswith(".localhost")
                                                 else host, *a, **kw)
from gradio_client import Client
token = sys.argv[1] or None
try:
    client = Client("alice/reverse", token=token, verbose=False, download_files=False)
except Exception as exc:
    print("REFUSED", type(exc).__name__, exc)
    sys.exit(0)
print("ANSWER", client.predict("private hello", api_name="/predict"))
"""


def test_gradio_client_resolves_a_private_space_by_name_and_predicts(gradio_gw):  # noqa: F811
    gw = gradio_gw
    accounts.add_user(gw.settings, gw.state, "alice")
    accounts.add_user(gw.settings, gw.state, "bob")
    token = accounts.create_token(gw.state, "alice", "read")[1]
    other = accounts.create_token(gw.state, "bob", "read")[1]
    gw.state.set_private("alice/reverse", True)
    time.sleep(1.05)  # past the gateway's snapshot

    def run(with_token):
        return subprocess.run([sys.executable, "-c", SCRIPT, with_token], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300,
                              env={"HF_ENDPOINT": gw.url, "PATH": "/usr/bin:/bin", "HF_HUB_DISABLE_TELEMETRY": "1",
                                   "HF_HOME": str(gw.settings.home / "hf")}).stdout
    assert "ANSWER olleh etavirp" in run(token)
    for stranger in ("", other):
        out = run(stranger)
        assert "REFUSED RepositoryNotFoundError" in out, out
