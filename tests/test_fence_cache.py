"""Build caches cannot be poisoned or turned into host mounts: real pushes, real Podman builds.

A Space's RUN steps share no cache with another Space's build, and a Dockerfile cannot name
the cache folder itself (Buildah joins a cache `id` to its folder as given, `..` included)."""
import re
import uuid

from helpers import git, push, write_files

DOCKER_README = "---\ntitle: Cache\nsdk: docker\napp_port: 8000\n---\n"
BASE = "FROM localhost/spacehooks/python:3.11\n"
SERVER = 'CMD ["python", "-m", "http.server", "8000"]\n'


def build_log(engine, space_id):
    """The log of the Space's latest build (build numbers are counted across Spaces)."""
    from spacehooks import state
    st = state.open(engine.settings)
    try:
        return st.build_log_path(space_id, st.builds(space_id)[0]["id"]).read_text()
    finally:
        st.close()


def build_of(engine, space_id, dockerfile):
    bare, work = engine.create(space_id, {"README.md": DOCKER_README, "Dockerfile": dockerfile})
    result = push(work, str(bare))
    assert result.returncode == 0, result.stdout
    engine.drain()
    return build_log(engine, space_id)


def rebuild(engine, space_id, dockerfile):
    work = engine.root.parent / "work" / space_id
    write_files(work, {"Dockerfile": dockerfile})
    git("commit", "-qam", "again", cwd=work)
    assert push(work, str(engine.root / f"{space_id}.git")).returncode == 0
    engine.drain()
    return build_log(engine, space_id)


def test_a_file_planted_in_a_cache_by_one_space_is_not_seen_by_another(engine):
    marker = f"planted-{uuid.uuid4().hex}"
    # the pip cache target the SDK builds install from, and the apt archive folder
    plant = (f"RUN --mount=type=cache,target=/root/.cache/pip --mount=type=cache,target=/var/cache/apt "
             f"echo evil > /root/.cache/pip/{marker} && echo evil > /var/cache/apt/{marker} && echo planted-done\n")
    log = build_of(engine, "mallory/plant", BASE + plant + SERVER)
    assert "planted-done" in log, log
    look = ("RUN --mount=type=cache,target=/root/.cache/pip --mount=type=cache,target=/var/cache/apt "
            f"echo pip-cache: $(ls /root/.cache/pip) apt-cache: $(ls /var/cache/apt) end-{uuid.uuid4().hex}\n")
    log = build_of(engine, "victim/look", BASE + look + SERVER)
    seen = [line for line in log.splitlines() if line.startswith("pip-cache: ")]
    assert len(seen) == 1, log
    assert marker not in seen[0]
    assert engine.space("victim/look")["stage"] == "RUNNING"
    # a Space's own cache outlives its build: caching keeps working
    log = rebuild(engine, "mallory/plant", BASE + look + SERVER)
    seen = [line for line in log.splitlines() if line.startswith("pip-cache: ")]
    assert len(seen) == 1 and marker in seen[0], log


def test_the_sdk_caches_are_the_spaces_own(engine):
    from spacehooks.build import builder
    deps = {"requirements.txt": b"six\n", "packages.txt": b"jq\n"}
    config = {"sdk": "gradio"}
    one = builder.containerfile(engine.settings, config, deps, "alice/one")
    two = builder.containerfile(engine.settings, config, deps, "bob/two")
    ids = {text: re.findall(r"--mount=type=cache,id=(spacehooks-[0-9a-f]{16}-[0-9a-f]{12}),target=", text)
           for text in (one, two)}
    assert len(ids[one]) == 4 and len(ids[two]) == 4  # apt archives, apt lists, pip twice
    assert not set(ids[one]) & set(ids[two])
    assert one.count("--mount=type=cache,") == 4  # no cache keyed by its target alone


HINT = ("cache mounts may set target, sharing, mode, uid, gid and ro; spacehooks gives each Space "
        "its own cache (its id); bind, secret and tmpfs mounts are unchanged")


def refused_at_push(engine, space_id, dockerfile):
    bare, work = engine.create(space_id, {"README.md": DOCKER_README, "Dockerfile": dockerfile})
    result = push(work, str(bare))
    assert result.returncode != 0, result.stdout
    assert engine.space(space_id) is None
    return result.stdout


def stored_without_the_gate(engine, space_id, dockerfile):
    """A Space deployed once, then a commit put in its repository past the gate (as a tree
    stored before this check was), built by `rebuild`: the build refuses it too."""
    from spacehooks.admin import spaces as admin
    bare, work = engine.create(space_id, {"README.md": DOCKER_README, "Dockerfile": BASE + SERVER})
    assert push(work, str(bare)).returncode == 0
    engine.drain()
    write_files(work, {"Dockerfile": dockerfile})
    git("commit", "-qam", "past the gate", cwd=work)
    git("fetch", "-q", str(work), "main:main", cwd=bare)
    admin.rebuild(engine.settings, space_id, False)
    engine.drain()
    return build_log(engine, space_id)


def test_a_dockerfile_cannot_name_a_cache_folder(engine):
    # Buildah would mount the host's /etc/ssh here (read-only, and only listed)
    step = "RUN --mount=type=cache,id=../../../etc/ssh,target=/x,ro ls /x\n"
    why = "a cache mount may not set id: RUN --mount=type=cache,id=../../../etc/ssh,target=/x,ro ls /x"
    out = refused_at_push(engine, "mallory/escape", BASE + step + SERVER)
    assert f"remote:  !     Dockerfile:2: {why} ({HINT})" in out, out
    log = stored_without_the_gate(engine, "mallory/escape2", BASE + step + SERVER)
    assert "ssh_host" not in log
    assert f"BUILD_ERROR: Dockerfile line 2: {why}" in log, log
    space = engine.space("mallory/escape2")
    assert space["error"].startswith("build #") and f" failed: Dockerfile line 2: {why}\n" in space["error"]
    assert space["stage"] == "RUNNING"  # the version before keeps serving


def test_a_cache_mount_split_over_lines_or_built_from_variables_is_refused(engine):
    split = "ARG X=../../../etc\nRUN --mount=type=cache,\\\nid=../../../etc,target=/x,ro ls /x\n"
    out = refused_at_push(engine, "mallory/split", BASE + split + SERVER)
    assert "remote:  !     Dockerfile:3: a cache mount may not set id: " in out, out
    log = stored_without_the_gate(engine, "mallory/split2", BASE + split + SERVER)
    assert "BUILD_ERROR: Dockerfile line 3: a cache mount may not set id: " in log, log
    variable = "ARG X=../../../etc\nRUN --mount=type=cache,id=$X,target=/x,ro ls /x\n"
    out = refused_at_push(engine, "mallory/variable", BASE + variable + SERVER)
    assert ("remote:  !     Dockerfile:3: a --mount value may not hold variables, quotes or escapes: "
            "RUN --mount=type=cache,id=$X,target=/x,ro ls /x") in out, out
