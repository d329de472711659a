"""The gateway under faults and hostile input: what users copy, requests it did not expect,
requests that must not be sent twice, slow and idle clients, a state store that is locked."""
import html
import re
import socket
import time

import requests

from gateway_support import *  # noqa: F401,F403 - fixtures
from helpers import git, work_repo


def test_embed_snippet_escapes_readme_values(gw, upstream):
    gw.add_space("eve/embed", port=upstream.port, config={
        "title": "Embed", "sdk": "gradio", "base_path": '/x"><script>alert(1)</script><b a=\'1\'>'})
    page = requests.get(gw.url + "/spaces/eve/embed", timeout=10).text
    shown = re.search(r'<div class="embed mono" id="embed">(.*?)</div>', page, re.S).group(1)
    assert "<" not in shown  # no markup in the page itself
    copied = html.unescape(shown)  # what a person copies into their own page
    url = f"http://eve-embed.localhost:{gw.port}/x%22%3E%3Cscript%3Ealert(1)%3C/script%3E%3Cb%20a=%271%27%3E"
    assert copied == f'<iframe src="{url}" frameborder="0" width="850" height="450"></iframe>'
    runtime = requests.get(gw.url + "/api/spaces/eve/embed/runtime", timeout=10).json()
    assert runtime["url"] == url
    # a base_path of `//host` would make the app's link point at another site
    gw.state.update_space("eve/embed", config={"title": "Embed", "sdk": "gradio", "base_path": "//evil.example/x"})
    time.sleep(1.05)
    page = requests.get(gw.url + "/spaces/eve/embed", timeout=10).text
    assert f'href="http://eve-embed.localhost:{gw.port}/"' in page and "evil.example" not in page


def test_static_space_never_redirects_to_another_host(gw, tmp_path):
    work = work_repo(tmp_path / "site", {"README.md": "---\nsdk: static\n---\n", "index.html": "home\n",
                                         "x/index.html": "folder x\n", "evil.example/index.html": "folder\n"})
    commit = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    gw.add_space("alice/site", repo_path=str(work / ".git"), commit=commit, config={"sdk": "static"})
    for path, location in (("//x", "/x/"), ("/\\x", None), ("//x/..", None), ("//evil.example", "/evil.example/"),
                           ("/%2F%2Fevil.example", "/evil.example/"), ("/x", "/x/")):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {gw.host('alice/site')}\r\nConnection: close\r\n\r\n".encode())
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
        head = got.split(b"\r\n\r\n")[0].decode()
        found = re.search(r"\r\nLocation: ([^\r]*)", head + "\r", re.I)
        assert (found.group(1) if found else None) == location, (path, head)
