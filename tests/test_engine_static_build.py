"""Static Spaces' app_build_command (issue 16, item 8): the command runs at build time with
Node.js and npm (Debian's, on the base image) under the build fences, installs a real npm
package from the registry through the build's CA, and the folder holding app_file in what it
built is what the gateway serves; a failing command fails the build with its last lines.
Real pushes, real Podman, real HTTP through the gateway."""
import shutil
import subprocess

import pytest

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import GatewayUnderTest
from helpers import push, write_files
from test_gateway_static import fetch

README = ("---\ntitle: Built\nsdk: static\napp_file: dist/index.html\n"
          "app_build_command: npm install --no-save && node build.js\n---\n")
PACKAGE = '{"name": "built-space", "version": "1.0.0", "private": true, "dependencies": {"marked": "12.0.2"}}\n'
# renders page.md with the marked package, and ships marked's own browser build beside it
BUILD = """const fs = require("fs");
const { marked } = require("marked");
fs.mkdirSync("dist/assets", { recursive: true });
fs.writeFileSync("dist/index.html", marked.parse(fs.readFileSync("page.md", "utf8")));
fs.copyFileSync("node_modules/marked/marked.min.js", "dist/assets/marked.min.js");
fs.symlinkSync("/etc/passwd", "dist/passwd");
console.log("built with marked " + require("marked/package.json").version);
"""
FILES = {"README.md": README, "package.json": PACKAGE, "build.js": BUILD, "page.md": "# Hello\n\nfrom *marked*\n"}


def build_log(engine, space_id, build_id=1):
    from spacehooks import follow
    return follow.build_log(engine.home, space_id, build_id).read_text()


def test_the_build_command_runs_with_npm_and_its_output_is_served(engine, loops, podman_url):
    bare, work = engine.create("alice/built", FILES)
    result = push(work, str(bare))
    assert result.returncode == 0, result.stdout
    assert "app_build_command" not in result.stdout  # no warning any more: it runs
    assert engine.drain() == 1
    space = engine.space("alice/built")
    log = build_log(engine, "alice/built")
    assert space["stage"] == "RUNNING", (space["error"], log[-3000:])
    assert "built with marked 12.0.2" in log
    assert "Built folder dist: serving it at / (index.html)" in log
    assert "Built folder: 1 links, special files or unsafe names not served" in log
    gw = GatewayUnderTest(engine, loops)
    host = gw.host("alice/built")
    try:
        status, headers, body = fetch(gw, host, "/")
        assert (status, body) == (200, b"<h1>Hello</h1>\n<p>from <em>marked</em></p>\n")
        status, _, script = fetch(gw, host, "/assets/marked.min.js")
        assert status == 200 and b"marked v12.0.2" in script
        assert fetch(gw, host, "/passwd")[0] == 404  # a link the command made is not served
        assert fetch(gw, host, "/package.json")[0] == 404  # only the built folder is served
    finally:
        gw.stop()
    # the deploy folder holds what the build made: gone by hand, it is not rewritten from the commit
    from spacehooks.build import staticsite
    from spacehooks.errors import SpaceError
    folder = staticsite.deploy_dir(engine.home, "alice/built", space["commit"])
    shutil.rmtree(folder)
    with pytest.raises(SpaceError) as gone:
        staticsite.materialise(engine.home, "alice/built", bare, space["commit"])
    assert gone.value.format_message() == (f"the built files of alice/built at {space['commit'][:12]} are gone\n"
                                           "  fix: spacehooks rebuild alice/built")
    assert not folder.exists()
    # the build image is gone once its folder is taken out; no build container is left
    images = subprocess.run(["podman", "--url", podman_url, "images", "-q", "localhost/spacehooks/space/alice/built"],
                            stdout=subprocess.PIPE, text=True).stdout
    assert images.strip() == ""
    left = subprocess.run(["podman", "--url", podman_url, "ps", "-aq", "--filter", "label=spacehooks.copy-out"],
                          stdout=subprocess.PIPE, text=True).stdout
    assert left.strip() == ""


def test_a_failing_build_command_fails_the_build_with_its_last_lines(engine):
    files = {**FILES, "build.js": "console.error('step one'); console.error('no page.md here'); process.exit(3);\n"}
    bare, work = engine.create("alice/broken", files)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    space = engine.space("alice/broken")
    assert space["stage"] == "BUILD_ERROR"
    # npm's own last line comes before the script's (its time varies)
    assert space["error"].startswith("build #1 failed: app_build_command 'npm install --no-save && node build.js' "
                                     "failed (exit status 3); its last lines: added 1 package in "), space["error"]
    assert space["error"].endswith("; step one; no page.md here"), space["error"]
    from spacehooks.gateway import pages
    page = pages.space_status(engine.settings, space, "failed")
    assert page.status == 503 and "no page.md here" in page.text

    # a command that builds no app_file fails too, naming it
    write_files(work, {"build.js": "require('fs').mkdirSync('dist'); console.log('empty');\n"})
    subprocess.run(["git", "commit", "-qam", "empty"], cwd=work, check=True)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    assert engine.space("alice/broken")["error"] == (
        "build #2 failed: app_build_command built no dist/index.html\n"
        "  fix: make the command write the file app_file names, or fix app_file")


@pytest.mark.parametrize("command", ["true\nFROM scratch", "echo ok \\"])
def test_the_command_cannot_add_containerfile_instructions(engine, command):
    from spacehooks.build import staticbuild
    text = staticbuild.containerfile(engine.settings, {"app_build_command": command, "app_file": "index.html"}, "a/b")
    run = text.splitlines()[-1]
    assert run.startswith("RUN ") and run.endswith('"]') and len(text.splitlines()) == 8
