"""A Space's disk use is bounded: every place it can write has a byte cap, and writes past it
fail inside the container while nothing lands on the host's disk. Real pushes, real Podman."""
import json
import os
import subprocess
import urllib.request

from helpers import push

README = "---\ntitle: Disk\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 30s\n---\n"
DOCKERFILE = ("FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\nCOPY --chown=1000:1000 . .\n"
              'CMD ["python", "app.py"]\n')
# Writes 8 MB (in 1 MB pieces) into each place, records how far it got, prints 2 MB of log
# lines, then serves the record.
APP = r'''
import errno, http.server, json, os
MB = b"x" * (1 << 20)
record = {}
for path in ["/home/user/app/blob", "/home/user/.cache/blob", "/tmp/blob", "/var/tmp/blob", "/blob", "/etc/blob"]:
    written, error = 0, None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            for _ in range(8):
                fh.write(MB)
                fh.flush()
                written += 1
    except OSError as exc:
        error = errno.errorcode.get(exc.errno, str(exc.errno))
    record[path] = [written, error]
    try:
        os.unlink(path)  # the cap stays, not the blob: the small write below must fit again
    except OSError:
        pass
with open("/home/user/app/small.txt", "w") as fh:  # an app may still write its own files
    fh.write("fits\n")
record["small"] = open("/home/user/app/small.txt").read()
for i in range(2 * 1024):
    print(f"{i:06d} " + "y" * 1016, flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
'''


def podman_inspect(name):
    out = subprocess.run(["podman", "inspect", name], stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out)[0]


def du(path):
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def test_writes_past_each_cap_fail_and_nothing_reaches_the_host_disk(engine):
    engine.configure(hardware={"cpu-basic": {"cpus": 1, "memory_mb": 1024, "disk_mb": 4, "tmp_mb": 3}},
                     run={**engine.values["run"], "log_bytes": 256 * 1024})
    from spacehooks import config
    engine.settings = config.load()
    bare, work = engine.create("disk/fill", {"README.md": README, "Dockerfile": DOCKERFILE, "app.py": APP})
    assert push(work, str(bare)).returncode == 0
    engine.drain()
    space = engine.space("disk/fill")
    assert space["stage"] == "RUNNING", space
    with urllib.request.urlopen(f"http://127.0.0.1:{space['port']}/", timeout=10) as response:
        record = json.loads(response.read())
    # home holds the app (copied from the image) within its 4 MB; /tmp has 3 MB
    assert record["/home/user/app/blob"][1] == "ENOSPC" and record["/home/user/app/blob"][0] < 4, record
    assert record["/home/user/.cache/blob"][1] == "ENOSPC" and record["/home/user/.cache/blob"][0] < 4, record
    assert record["/tmp/blob"] == [3, "ENOSPC"], record
    for path in ("/var/tmp/blob", "/blob", "/etc/blob"):
        assert record[path] == [0, "EROFS"], record
    assert record["small"] == "fits\n"
    info = podman_inspect(space["container"])
    # nothing the app wrote landed in the container's layer on the host's disk
    assert du(info["GraphDriver"]["Data"]["UpperDir"]) < 64 * 1024
    # the container's own log (2 MB printed) is cut at run.log_bytes
    assert info["HostConfig"]["LogConfig"]["Size"] == "262.1kB"
    assert os.path.getsize(info["HostConfig"]["LogConfig"]["Path"]) <= 2 * 256 * 1024


def test_caps_come_from_the_flavor_then_the_settings(engine):
    from spacehooks import config
    from spacehooks.run import runspec
    engine.configure(hardware={"small-disk": {"cpus": 1, "memory_mb": 512, "disk_mb": 100}},
                     run={"disk_mb": 2000, "tmp_mb": 300})
    settings = config.load()
    small = runspec.limits_for(settings, {"hardware": "small-disk"})
    assert (small["disk_mb"], small["tmp_mb"]) == (100, 300)
    # cpu-basic, the default flavor, follows run.* (run.memory_mb, run.cpus, run.disk_mb)
    basic = runspec.limits_for(settings, {"hardware": "cpu-basic"})
    assert (basic["disk_mb"], basic["tmp_mb"]) == (2000, 300)
    upgrade = runspec.limits_for(settings, {"hardware": "cpu-upgrade"})
    assert (upgrade["disk_mb"], upgrade["tmp_mb"]) == (8192, 300)


# Writes 64 MB in 1 MB pieces, 20 a second, into the step's layer or a cache mount; ends by
# itself so that code without the cap (where this build succeeds) does not fill the machine.
WRITER = """import sys, time
with open(sys.argv[1], "wb") as fh:
    for i in range(64):
        fh.write(b"x" * (1 << 20))
        fh.flush()
        time.sleep(0.05)
print("wrote 64 MB")
"""


def test_a_build_step_writing_past_build_disk_mb_fails_the_build(engine):
    import uuid
    engine.configure(build={**engine.values["build"], "disk_mb": 8})
    from spacehooks import config, state
    engine.settings = config.load()
    steps = {"disk/layer": "RUN python3 /tmp/writer.py /big",
             "disk/cache": "RUN --mount=type=cache,target=/c python3 /tmp/writer.py /c/big"}
    for space_id, step in steps.items():
        dockerfile = ("FROM localhost/spacehooks/python:3.11\nCOPY writer.py /tmp/writer.py\n"
                      f"{step}\n" + 'CMD ["sleep", "60"]\n')
        # a fresh comment: the step runs rather than coming from an earlier run's layer cache
        bare, work = engine.create(space_id, {"README.md": README, "Dockerfile": dockerfile,
                                              "writer.py": f"# {uuid.uuid4()}\n{WRITER}"})
        assert push(work, str(bare)).returncode == 0
        engine.drain()
        st = state.open(engine.settings)
        build = st.builds(space_id)[0]
        st.close()
        assert build["status"] == "failed", build
        assert build["error"].startswith("a build step was stopped for writing more than the build's disk "
                                         "limit (build.disk_mb = 8 MB): "), build["error"]
