"""Admin commands through the real CLI: secrets, variables, spaces, status, doctor, pause/resume,
limits, build logs, rollback, gc and delete."""
import stat
import subprocess
import sys
import time
import urllib.request

from helpers import git, push, write_files

STATIC_README = "---\ntitle: Static\nsdk: static\n---\n"


def cli(*args, input=None):
    return subprocess.run([sys.executable, "-m", "spacehooks", *args], input=input, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_secrets_are_private_files_and_list_shows_names_only(engine):
    assert cli("secrets", "set", "carol/app", "API_KEY", input="v4lue-123\n").returncode == 0
    path = engine.home / "secrets" / "carol" / "app" / "API_KEY"
    assert path.read_text() == "v4lue-123"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    listing = cli("secrets", "list", "carol/app")
    assert listing.stdout == "API_KEY\n"
    bad = cli("secrets", "delete", "carol/app", "NOPE")
    assert bad.returncode == 1
    assert bad.stdout == ("Error: carol/app has no secret NOPE\n"
                          "  fix: see `spacehooks secrets list carol/app`\n")
    assert cli("secrets", "delete", "carol/app", "API_KEY").returncode == 0
    assert not path.exists()


def test_variables_spaces_and_status(engine):
    bare, work = engine.create("carol/page", {"README.md": STATIC_README, "index.html": "hi\n"})
    assert push(work, str(bare)).returncode == 0
    engine.drain()
    assert cli("variables", "set", "carol/page", "MODE", "fast").stdout == "variable MODE set for carol/page\n"
    assert cli("variables", "list", "carol/page").stdout == "MODE=fast\n"
    lines = cli("spaces").stdout.splitlines()
    assert lines[1].split()[:2] == ["carol/page", "RUNNING"]
    status = cli("status", "carol/page").stdout
    assert "stage:     RUNNING\n" in status and "build #1: succeeded " in status
    missing = cli("status", "carol/none")
    assert missing.stdout == "Error: no Space 'carol/none'\n  fix: see `spacehooks spaces` for the known Spaces\n"


def test_doctor_reports_a_missing_base_image_with_its_fix(engine):
    engine.configure(python_versions={"3.11": "localhost/spacehooks/python:3.11", "3.9": "localhost/spacehooks/none:3.9"})
    result = cli("doctor")
    assert result.returncode == 1
    assert ("PROBLEM  base image localhost/spacehooks/none:3.9 for python 3.9 is missing\n"
            "  fix: run `spacehooks base-image build`\n") in result.stdout
    assert "ok       Podman service answers at " in result.stdout


def test_doctor_reports_a_missing_home_group(engine):
    engine.configure(home_group="spacehooks-no-such-group")
    result = cli("doctor")
    assert result.returncode == 1
    assert ("PROBLEM  home_group spacehooks-no-such-group does not exist: post-receive, run by the git account, "
            "cannot record builds\n  fix: groupadd --system spacehooks-no-such-group && usermod -a -G "
            "spacehooks-no-such-group GIT_ACCOUNT (or set home_group)\n") in result.stdout


# --- life-cycle commands on a real docker Space ----------------------------------------

DOCKER_README = "---\ntitle: Admin\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 30s\n---\n"
DOCKERFILE = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\nCOPY --chown=1000:1000 . .\n"
              'CMD ["python", "-m", "http.server", "8000"]\n')


def podman(*args):
    return subprocess.run(["podman", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def answer(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v.txt", timeout=5) as response:
            return response.read().decode()
    except OSError as exc:
        return f"no answer: {exc}"


def containers(space_id):
    return podman("ps", "-a", "--format", "{{.Names}}", "--filter", f"label=spacehooks.space={space_id}").stdout.split()


def deploy_version(engine, work, bare, text):
    write_files(work, {"v.txt": text})
    git("add", "-A", cwd=work)
    git("commit", "-qm", text.strip(), cwd=work)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1


def test_pause_resume_limits_and_build_logs(engine):
    space_id = "admin/life"
    bare, work = engine.create(space_id, {"README.md": DOCKER_README, "Dockerfile": DOCKERFILE, "v.txt": "one\n"})
    assert push(work, str(bare)).returncode == 0
    # `logs --build --follow` ends by itself when the build ends
    follower = subprocess.Popen([sys.executable, "-m", "spacehooks", "logs", space_id, "--build", "--follow"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert engine.drain() == 1
    out, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0
    assert out.splitlines()[0].startswith("Building localhost/spacehooks/space/admin/life:b1 from ")
    assert out.endswith(f"Deployed: {space_id} is RUNNING on 127.0.0.1:{engine.space(space_id)['port']}\n"
                        f"-----> Build #1 deployed: {space_id} is RUNNING\n")
    assert cli("logs", space_id, "--build").stdout == out

    paused = cli("pause", space_id)
    assert paused.stdout == f"{space_id}: PAUSED (resume with `spacehooks resume {space_id}`)\n"
    space = engine.space(space_id)
    assert (space["stage"], space["container"], space["port"], containers(space_id)) == ("PAUSED", None, None, [])
    again = cli("pause", space_id)
    assert again.stdout == f"{space_id}: PAUSED (resume with `spacehooks resume {space_id}`)\n"
    resumed = cli("resume", space_id)
    assert resumed.stdout == f"{space_id}: RUNNING\n"
    assert answer(engine.space(space_id)["port"]) == "one\n"
    assert cli("resume", space_id).stdout == f"Error: {space_id} is RUNNING, not paused\n"

    result = cli("limits", "set", space_id, "--memory-mb", "200", "--cpus", "0.25", "--pids", "64")
    assert result.stdout == (f"{space_id}: limits memory_mb=200, cpus=0.25, pids=64\n"
                             f"{space_id} restarted: RUNNING\n")
    space = engine.space(space_id)
    cgroup = podman("exec", space["container"], "sh", "-c",
                    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
                    "/sys/fs/cgroup/pids/pids.max 2>/dev/null || "
                    "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max").stdout.split()
    assert [w for w in cgroup if w != "100000"] == [str(200 * 1024 * 1024), "25000", "64"]
    assert cli("limits", "show", space_id).stdout == ("memory_mb  200      (set for this Space)\n"
                                                      "cpus       0.25     (set for this Space)\n"
                                                      "pids       64       (set for this Space)\n")
    assert cli("limits", "set", space_id, "--reset", "--pids", "128").returncode == 0
    assert cli("limits", "show", space_id).stdout == ("memory_mb  1024     (hardware cpu-basic)\n"
                                                      "cpus       1        (hardware cpu-basic)\n"
                                                      "pids       128      (set for this Space)\n")
    nothing = cli("limits", "set", space_id)
    assert nothing.stdout == "Error: nothing to set\n  fix: give --memory-mb, --cpus or --pids (or --reset)\n"


def test_rollback_gc_and_delete(engine):
    space_id = "admin/versions"
    engine.configure(run={**engine.values["run"], "keep_builds": 1})
    bare, work = engine.create(space_id, {"README.md": DOCKER_README, "Dockerfile": DOCKERFILE, "v.txt": "one\n"})
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    first_commit = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    deploy_version(engine, work, bare, "two\n")
    deploy_version(engine, work, bare, "three\n")
    repo = f"localhost/spacehooks/space/{space_id}"

    rolled = cli("rollback", space_id)
    assert rolled.stdout.startswith(f"rolling {space_id} back to build #2 (")
    assert rolled.stdout.endswith(f"{space_id}: RUNNING\n")
    assert answer(engine.space(space_id)["port"]) == "two\n"
    rolled = cli("rollback", space_id, "1")
    assert rolled.stdout == f"rolling {space_id} back to build #1 ({first_commit[:12]})\n{space_id}: RUNNING\n"
    space = engine.space(space_id)
    assert (space["build_id"], answer(space["port"])) == (1, "one\n")
    nothing = cli("rollback", space_id, "7")
    assert nothing.stdout == (f"Error: {space_id}: no earlier successful build #7\n"
                              f"  fix: see `spacehooks status {space_id}` for its builds\n")

    time.sleep(engine.settings["run.grace_seconds"] + 0.5)
    collected = cli("gc")  # keeps the newest build (#3) and the running one (#1), removes #2
    assert collected.stdout == (f"removed {repo}:b2\n1 old image(s) removed\n"
                                f"removed logs/builds/{space_id}/2.log\n1 old log(s) removed\n"
                                "0 old static deploy(s) removed\n")
    assert containers(space_id) == [space["container"]]  # retired containers went too
    assert podman("image", "exists", f"{repo}:b3").returncode == 0
    assert podman("image", "exists", f"{repo}:b1").returncode == 0
    gone = cli("rollback", space_id, "2")
    assert gone.stdout == (f"Error: the image of build #2 was removed by gc\n"
                           f"  fix: rebuild instead: spacehooks rebuild {space_id}\n")

    assert cli("secrets", "set", space_id, "TOKEN", input="abcdef\n").returncode == 0
    assert (engine.home / "logs" / "builds" / space_id / "1.log").exists()
    deleted = cli("delete", space_id, "--yes")
    assert deleted.stdout == f"{space_id} deleted (its git repository {bare} is left alone)\n"
    assert containers(space_id) == []
    assert podman("images", "-q", repo).stdout == ""
    assert engine.space(space_id) is None
    assert not (engine.home / "logs" / "builds" / space_id).exists()
    assert not (engine.home / "secrets" / space_id).exists()
    assert git("rev-parse", "main", cwd=bare).stdout.strip() == git("rev-parse", "HEAD", cwd=work).stdout.strip()


def test_delete_with_the_podman_service_down_says_so_and_deletes_nothing(server, tmp_path):
    # before: "internal error (APIError); this is a bug", with the Space half deleted
    from spacehooks import config, state
    socket = tmp_path / "gone.sock"
    server.configure(podman_url=f"unix://{socket}")
    st = state.open(config.load())
    st.ensure_space("carol/kept", tmp_path / "carol" / "kept.git")
    st.update_space("carol/kept", stage="RUNNING")
    st.close()
    result = cli("delete", "--yes", "carol/kept")
    assert result.returncode == 1
    assert result.stdout == (f"Error: the Podman service at unix://{socket} is not answering; nothing of carol/kept "
                             "was deleted\n  fix: start it (contrib/podman/start-service.sh, or systemctl start "
                             "spacehooks-podman.socket) and run the command again\n")
    st = state.open(config.load())
    assert st.get_space("carol/kept")["stage"] == "RUNNING"
    st.close()
