"""A symlink in a Space's files that leads out of the repository: the build fails naming the
file, instead of Podman's bare HTTP 500. Real push, real worker, real Podman."""
import os

from helpers import git, push

README = "---\ntitle: Links\nsdk: docker\napp_port: 8000\n---\n"
DOCKERFILE = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\nCOPY --chown=1000:1000 . .\n"
              'CMD ["python", "-m", "http.server", "8000"]\n')


def test_a_symlink_out_of_the_repository_fails_the_build_naming_the_file(engine):
    bare, work = engine.create("alice/links", {"README.md": README, "Dockerfile": DOCKERFILE, "data/x.txt": "x\n"})
    os.symlink("../../../etc/passwd", work / "data" / "passwd")
    os.symlink("x.txt", work / "data" / "inside")  # a link inside the repository is fine
    git("add", "-A", cwd=work)
    git("commit", "-qm", "links", cwd=work)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    space = engine.space("alice/links")
    message = "data/passwd: a symlink to ../../../etc/passwd, outside the repository; the build cannot copy it"
    assert space["stage"] == "BUILD_ERROR"
    assert space["error"].startswith(f"build #1 failed: {message}"), space["error"]
