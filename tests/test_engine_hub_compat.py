"""A Space written for the Hub, built and run unchanged: a `readme.md` asking for a Python the
server lacks is built on the nearest base image the push named (real push, build, container)."""
import subprocess
import urllib.request

from helpers import push

README = "---\ntitle: Lit\nsdk: streamlit\nsdk_version: 1.39.0\napp_file: main.py\npython_version: 3.10\n---\n"
APP = "import streamlit as st\n\nst.write('hello')\n"


def test_readme_md_with_a_missing_python_builds_on_the_nearest(engine):
    bare, work = engine.create("bob/hub", {"readme.md": README, "main.py": APP})
    result = push(work, str(bare))
    assert result.returncode == 0, result.stdout
    warning = ('remote:  !     warning: readme.md:6: "python_version" 3.10 is not on this server: the Space runs on '
               'python 3.11, the nearest it has; an administrator can add 3.10 (spacehooks README, "Compatibility with the Hub")')
    assert warning in [line.rstrip() for line in result.stdout.splitlines()], result.stdout
    assert engine.drain() == 1
    space = engine.space("bob/hub")
    assert space["stage"] == "RUNNING", space
    log = (engine.home / "logs" / "builds" / "bob" / "hub" / "1.log").read_text()
    assert (f"python_version 3.10 is not on this server: building on python 3.11 "
            f"({engine.settings['python_versions']['3.11']}), the nearest it has") in log.splitlines()
    version = subprocess.run(["podman", "exec", space["container"], "python", "-c",
                              "import sys; print(sys.version_info[:2])"], stdout=subprocess.PIPE, text=True).stdout
    assert version == "(3, 11)\n"
    with urllib.request.urlopen(f"http://127.0.0.1:{space['port']}/", timeout=10) as response:
        assert response.status == 200
