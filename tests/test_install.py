"""`spacehooks install/uninstall` on real bare repositories, with pre-existing hooks."""
import subprocess
import sys

from helpers import GRADIO_README, bare_repo, push, work_repo


def cli(*args, check=True):
    return subprocess.run([sys.executable, "-m", "spacehooks", *args], check=check,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def snapshot(path):
    return {str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mode) for p in sorted(path.rglob("*")) if p.is_file()}


def test_install_twice_changes_nothing_and_finds_repos_in_a_folder(server):
    a = bare_repo(server.root, "alice/one")
    b = bare_repo(server.root, "bob/two")
    first = cli("install", str(server.root))
    assert f"{a}: installed pre-receive, installed post-receive, enabled push options, enabled git's checks of received objects (plain layout)" in first.stdout
    assert f"{b}: installed pre-receive" in first.stdout
    before = snapshot(server.root)
    second = cli("install", str(server.root))
    assert second.stdout.splitlines() == [f"{a}: unchanged (plain layout)", f"{b}: unchanged (plain layout)"]
    assert snapshot(server.root) == before


def test_existing_hook_is_chained_and_restored(server, tmp_path):
    bare = bare_repo(server.root, "alice/demo")
    marker = tmp_path / "old-hook-ran"
    old = f"#!/bin/sh\ncat > {marker}\necho old hook says hi\n"
    (bare / "hooks" / "pre-receive").write_text(old)
    (bare / "hooks" / "pre-receive").chmod(0o755)
    out = cli("install", str(bare)).stdout
    assert "kept the previous pre-receive (runs first, as pre-receive.spacehooks-chained)" in out
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "x\n"})
    result = push(work, str(bare))
    assert result.returncode == 0, result.stdout
    assert "remote: old hook says hi" in result.stdout
    assert "refs/heads/main" in marker.read_text()  # the old hook got git's stdin
    # an old hook that refuses still refuses
    (bare / "hooks" / "pre-receive.spacehooks-chained").write_text("#!/bin/sh\necho policy: no\nexit 1\n")
    work_repo(work, {"app.py": "y\n"}, "second")
    refused = push(work, str(bare))
    assert refused.returncode != 0 and "remote: policy: no" in refused.stdout
    (bare / "hooks" / "pre-receive.spacehooks-chained").write_text(old)
    cli("uninstall", str(bare))
    assert (bare / "hooks" / "pre-receive").read_text() == old
    assert not (bare / "hooks" / "post-receive").exists()
    assert not (bare / "hooks" / "pre-receive.spacehooks-chained").exists()


def test_gitea_layout_adds_to_the_d_folder(server, tmp_path):
    bare = bare_repo(server.root, "alice/gitea")
    hooks = bare / "hooks"
    # Gitea's own hook: runs every script in pre-receive.d with the same stdin
    runner = ("#!/usr/bin/env bash\ndata=$(cat)\nexit_codes=(0)\nhookname=$(basename $0)\n"
              "GIT_DIR=${GIT_DIR:-$(dirname $0)/..}\nfor hook in ${GIT_DIR}/hooks/${hookname}.d/*; do\n"
              "  test -x \"${hook}\" && test -f \"${hook}\" || continue\n"
              "  echo \"${data}\" | \"${hook}\"\n  exit_codes+=($?)\ndone\n"
              "for i in \"${exit_codes[@]}\"; do [ \"${i}\" == 0 ] || exit ${i}; done\n")
    for name in ("pre-receive", "post-receive"):
        (hooks / name).write_text(runner)
        (hooks / name).chmod(0o755)
        (hooks / f"{name}.d").mkdir()
        (hooks / f"{name}.d" / "gitea").write_text("#!/bin/sh\ncat >/dev/null\necho gitea ran\n")
        (hooks / f"{name}.d" / "gitea").chmod(0o755)
    out = cli("install", str(bare)).stdout
    assert "(gitea layout)" in out
    assert (hooks / "pre-receive.d" / "spacehooks").exists()
    assert (hooks / "pre-receive").read_text() == runner
    env = {"GITEA_REPO_USER_NAME": "carol", "GITEA_REPO_NAME": "app", "GITEA_PUSHER_NAME": "carol"}
    work = work_repo(tmp_path / "w", {"README.md": "---\nsdk: flask\n---\n"})
    result = push(work, str(bare), env=env)
    assert result.returncode != 0
    assert "remote: -----> Checking carol/app (main " in result.stdout
    assert 'remote:  !     README.md:2: "sdk" must be one of [gradio, streamlit, docker, static] (found "flask")' in result.stdout
    cli("uninstall", str(bare))
    assert not (hooks / "pre-receive.d" / "spacehooks").exists()
    assert (hooks / "pre-receive.d" / "gitea").exists()


def test_install_refuses_a_folder_without_repositories(server, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("install", str(empty), check=False)
    assert result.returncode == 1
    assert result.stdout.strip().splitlines() == [
        f"Error: no bare repository found under {empty}",
        "  fix: give the path of a bare repository (created with git init --bare) or a folder holding them"]


def test_validate_a_working_copy(server, tmp_path):
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README.replace("blue", "teal"), "app.py": "x\n",
                                      "keys.txt": "-----BEGIN OPENSSH PRIVATE KEY-----\n"
                                                  "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"})
    result = cli("validate", str(work), check=False)
    assert result.returncode == 1
    assert ' !     README.md:4: "colorFrom" must be one of [red, yellow, green, blue, indigo, purple, pink, gray] (found "teal")' in result.stdout
    assert " !     keys.txt:1: looks like a private key (-----B…); remove it from every commit of the push and store " \
           "it on the server instead: spacehooks secrets set OWNER/NAME NAME; if it is no secret, confirm this one finding: " \
           "git push -o secret-ok=" in result.stdout
    work_repo(work, {"README.md": GRADIO_README, "keys.txt": None}, "fix")
    ok = cli("validate", str(work))
    assert "all checks passed" in ok.stdout


def test_space_id_from_path_and_server_variables(server):
    from spacehooks import config, hooks
    settings = config.load()
    assert hooks.space_id_for(server.root / "alice" / "demo.git", settings, {}) == "alice/demo"
    assert hooks.space_id_for(server.root / "solo.git", settings, {}) == "spaces/solo"
    assert hooks.space_id_for(server.root / "x.git", settings, {"GL_REPO": "team/app"}) == "team/app"
    assert hooks.space_id_for(server.root / "x.git", settings, {"GL_PROJECT_PATH": "grp/sub/app"}) == "grp-sub/app"
    assert hooks.pusher_identity({"REMOTE_USER": "http-user"}) == "http-user"
    assert hooks.pusher_identity({"GL_USER": "gito", "REMOTE_USER": "x"}) == "gito"
