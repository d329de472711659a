"""A private CA (TLS-inspecting proxy): every RUN step of a build trusts it, a docker Space's own
Dockerfile included, it never lands in an image, running Spaces get it by setting, and pip's
own error reaches the Space's error. Real pushes, real Podman builds, real HTTPS to PyPI
through this machine's inspecting proxy."""
import base64
import json
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

from helpers import push

HOST_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DOCKER_README = "---\ntitle: CA demo\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 20s\n---\n"


def podman(*args):
    return subprocess.run(["podman", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "spacehooks", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def marker_bundle(folder: Path) -> tuple[Path, bytes, bytes, str]:
    """The host's bundle plus a throwaway certificate whose bytes are searched for later."""
    name = f"spacehooks-marker-{uuid.uuid4().hex}"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(folder / "marker.key"), "-out", str(folder / "marker.pem"),
                    "-days", "1", "-subj", f"/CN={name}"], check=True, capture_output=True)
    pem = (folder / "marker.pem").read_bytes()
    der = base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))
    bundle = folder / "bundle.crt"
    bundle.write_bytes(HOST_BUNDLE.read_bytes() + pem)
    return bundle, pem, der, name


def scan_image(image: str, folder: Path, needles: list[bytes]) -> list[str]:
    """Every layer of the saved image (and its config) searched for each needle."""
    archive = folder / "image.tar"
    saved = podman("save", "--format", "docker-archive", "-o", str(archive), image)
    assert saved.returncode == 0, saved.stdout
    found, members = [], 0
    with tarfile.open(archive) as outer:
        for member in outer:
            if not member.isfile():
                continue
            members += 1
            data = outer.extractfile(member).read()
            found += [f"{member.name}: {needle[:40]!r}" for needle in needles if needle in data]
            if member.name.endswith(".tar"):
                with tarfile.open(fileobj=outer.extractfile(member)) as layer:
                    for entry in layer:
                        if entry.isfile():
                            body = layer.extractfile(entry).read()
                            found += [f"{member.name}/{entry.name}" for needle in needles if needle in body]
    archive.unlink()
    assert members > 2
    return found


def test_dockerfile_run_steps_trust_the_ca_and_it_stays_out_of_the_image(engine, tmp_path):
    bundle, pem, der, name = marker_bundle(tmp_path)
    engine.configure(**{**engine.values, "build": {**engine.values["build"], "ca_bundle": str(bundle)},
                        "run": {**engine.values["run"], "ca_bundle": str(bundle)}})
    from spacehooks import config
    engine.settings = config.load()
    # the Hub's kind of Dockerfile, untouched (a fresh first step: no layer from an earlier run): pip, curl and python's urllib over HTTPS
    files = {"README.md": DOCKER_README, "Dockerfile": (
        "FROM localhost/spacehooks/python:3.11\nWORKDIR /home/user/app\n"
        f"RUN echo {uuid.uuid4()} && pip download --no-deps six -d /tmp/six && \\\n    ls /tmp/six\n"
        "RUN curl -sS https://pypi.org/simple/six/ -o /dev/null && echo curl-ok\n"
        "RUN apt-config dump | grep -q '^Acquire::https::CaInfo \"/run/secrets/spacehooks-ca\";' && echo apt-ca-ok\n"
        "RUN [\"python\", \"-c\", \"import urllib.request, ssl; urllib.request.urlopen('https://pypi.org/simple/six/', "
        "context=ssl.create_default_context(cafile='/run/secrets/spacehooks-ca')); print('exec-form-ok')\"]\n"
        "COPY --chown=1000:1000 . .\n"
        'CMD ["python", "-m", "http.server", "8000"]\n')}
    bare, work = engine.create("alice/ca", files)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    space = engine.space("alice/ca")
    assert space["stage"] == "RUNNING", space["error"]
    log = (engine.home / "logs" / "builds" / "alice" / "ca" / "1.log").read_text()
    assert "six-" in log and "curl-ok\n" in log and "apt-ca-ok\n" in log and "exec-form-ok\n" in log
    # the marker's PEM lines, its DER bytes and its name: in no layer and not in the config
    lines = pem.strip().splitlines()[1:-1]
    found = scan_image(space["image"], tmp_path, [der, lines[1], lines[-2], name.encode()])
    assert found == []
    # run.ca_bundle: the running Space sees the bundle read-only, and the variables
    container = space["container"]
    seen = podman("exec", container, "sh", "-c", f"grep -c -F {lines[1].decode()} /etc/spacehooks/ca.crt; "
                  "touch /etc/spacehooks/ca.crt 2>/dev/null || echo read-only; "
                  "echo $SSL_CERT_FILE $REQUESTS_CA_BUNDLE $PIP_CERT $CURL_CA_BUNDLE $NODE_EXTRA_CA_CERTS $GIT_SSL_CAINFO")
    assert seen.stdout.split("\n") == ["1", "read-only", " ".join(["/etc/spacehooks/ca.crt"] * 6), ""], seen.stdout
    reach = podman("exec", container, "python", "-c",
                   "import urllib.request; print(urllib.request.urlopen('https://pypi.org/simple/six/').status)")
    assert reach.stdout.split()[-1:] == ["200"], reach.stdout


def test_pip_failure_names_pips_own_error(engine):
    from spacehooks.gateway import pages
    files = {"README.md": "---\ntitle: Bad req\nsdk: gradio\nsdk_version: 5.9.1\n---\n",
             "app.py": "print('never')\n", "requirements.txt": "spacehooks-no-such-package-zz9==1.0\n"}
    bare, work = engine.create("alice/badreq", files)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    space = engine.space("alice/badreq")
    assert space["stage"] == "BUILD_ERROR"
    line = "ERROR: No matching distribution found for spacehooks-no-such-package-zz9==1.0"
    assert space["error"].endswith(f"exit status 1: {line}"), space["error"]
    page = pages.space_status(engine.settings, space, "failed")
    assert page.status == 503 and line in page.text


def test_doctor_checks_that_a_build_container_reaches_the_index(engine):
    engine.configure(**{**engine.values, "build": {**engine.values["build"], "ca_bundle": "none"}})
    result = cli("doctor")
    assert result.returncode == 1
    index = "https://pypi.org/simple/pip/"
    assert f"PROBLEM  a build container cannot reach the package index {index}: " in result.stdout
    assert "CERTIFICATE_VERIFY_FAILED" in result.stdout, result.stdout
    assert ("  fix: set build.ca_bundle to the CA bundle that holds your TLS-inspecting proxy's certificate "
            "(`auto`: the host's /etc/ssl/certs/ca-certificates.crt), and run.ca_bundle for the Spaces themselves\n"
            ) in result.stdout
    engine.configure(**{**engine.values, "build": {**engine.values["build"], "ca_bundle": "auto"}})
    result = cli("doctor")
    assert (f"ok       a build container reaches the package index {index} trusting "
            "/etc/ssl/certs/ca-certificates.crt\n") in result.stdout


def test_dockerfile_rewrite_gives_every_run_the_ca_and_keeps_the_authors_shell_and_values():
    from spacehooks.push import buildmounts
    text = ('FROM x\nRUN pip install a && \\\n  curl y\nRUN ["python", "-c", "1"]\nSHELL ["pwsh", "-c"]\n'
            'RUN Get-Thing\nFROM y\nRUN --mount=type=cache,target=/c echo hi\nENV A=1\n')
    mounts = "--mount=type=secret,id=spacehooks-ca,mode=0444 --mount=type=secret,id=spacehooks-ca-apt,mode=0444"
    exports = ("export " + " ".join(f'{n}="${{{n}:-/run/secrets/spacehooks-ca}}"' for n in (
        "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO"))
        + ' APT_CONFIG="${APT_CONFIG:-/run/secrets/spacehooks-ca-apt}"; ')
    cache = buildmounts.cache_id("a/b", "/c")
    assert buildmounts.confine_dockerfile("a/b", text, ca=True).splitlines() == [
        "FROM x", f"RUN {mounts} {exports}pip install a &&   curl y",
        f'RUN {mounts} ["python", "-c", "1"]',  # exec form: the file, no shell to export in
        'SHELL ["pwsh", "-c"]', f"RUN {mounts} Get-Thing",  # not a POSIX shell: no export
        "FROM y", f"RUN --mount=type=cache,target=/c,id={cache} {mounts} {exports}echo hi", "ENV A=1"]
    assert buildmounts.confine_dockerfile("a/b", text, ca=False) == text.replace(
        "target=/c echo", f"target=/c,id={cache} echo")
