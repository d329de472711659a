"""Real `git push` over file:// to bare repositories with the hooks installed."""
import os
import subprocess
import sys

import pytest

from spacehooks.push.secretscan import fingerprint
from helpers import GRADIO_README, bare_repo, git, push, refs_and_objects, work_repo

STATIC_README = "---\ntitle: Static\nemoji: 📄\ncolorFrom: red\ncolorTo: pink\nsdk: static\n---\n"
STREAMLIT_README = "---\ntitle: S\nsdk: streamlit\nsdk_version: 1.39.0\napp_file: main.py\n---\n"
DOCKER_README = "---\ntitle: D\nsdk: docker\napp_port: 8000\n---\n"
REJECTED = "Sorry, your push was rejected during Space verification:"


def remote_lines(result):
    return [line.removeprefix("remote: ").rstrip() for line in result.stdout.splitlines()
            if line.startswith("remote: ")]


def problems(result):
    return [line.removeprefix(" !     ") for line in remote_lines(result)
            if line.startswith(" !     ") and REJECTED not in line and not line.startswith(" !     warning:")]


@pytest.fixture
def space(server, tmp_path):
    bare = bare_repo(server.root, "alice/demo")
    subprocess.run([sys.executable, "-m", "spacehooks", "install", str(bare)], check=True, env=None)
    return bare


def test_good_spaces_for_each_sdk_are_accepted(server, space, tmp_path):
    cases = {
        "gradio": {"README.md": GRADIO_README, "app.py": "import gradio\n", "requirements.txt": "numpy==1.26.4\n",
                   "packages.txt": "# tools\nffmpeg\nlibsm6 libxext6\n"},
        "streamlit": {"README.md": STREAMLIT_README, "main.py": "import streamlit\n"},
        "docker": {"README.md": DOCKER_README, "Dockerfile": "FROM python:3.11-slim\n"},
        "static": {"README.md": STATIC_README, "index.html": "<h1>hi</h1>\n"},
    }
    for sdk, files in cases.items():
        bare = bare_repo(server.root, f"alice/{sdk}")
        subprocess.run([sys.executable, "-m", "spacehooks", "install", str(bare)], check=True)
        work = work_repo(tmp_path / f"w-{sdk}", files)
        result = push(work, str(bare))
        assert result.returncode == 0, result.stdout
        assert f"-----> Checking alice/{sdk} (main " in result.stdout
        assert "all checks passed" in result.stdout
        assert git("rev-parse", "main", cwd=bare).stdout.strip() == git("rev-parse", "HEAD", cwd=work).stdout.strip()


def test_every_problem_is_reported_at_once_and_nothing_lands(server, space, tmp_path):
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "print(1)\n"})
    assert push(work, str(space)).returncode == 0
    before = refs_and_objects(space)
    readme = ("---\ntitle: Demo\ncolorFrom: orange\ncolorTo: blue\nsdk: gradio\npython_version: 3.10\n"
              "app_file: ../etc/passwd\nshort_description: " + "x" * 61 + "\nfullWidth: 'yes'\n"
              "custom_headers:\n  cross-origin-opener-policy: Same-Origin\nlanguage: en\n---\n")
    work_repo(work, {"README.md": readme, "requirements.txt": "numpy\n--extra-index-url https://mirror.example/simple\n",
                     "packages.txt": "ffmpeg\ncurl && rm -rf /\n",
                     "config.py": "TOKEN = 'hf_" + "a1B2c3D4e5" * 3 + "abcd'\n"}, "bad")
    result = push(work, str(space))
    assert result.returncode != 0
    assert f" !     {REJECTED}" in remote_lines(result)
    assert problems(result) == [
        'README.md:3: "colorFrom" must be one of [red, yellow, green, blue, indigo, purple, pink, gray] (found "orange")',
        'README.md:7: "app_file" must stay inside the repository (no ".." parts) (found "../etc/passwd")',
        'README.md:8: "short_description" must be at most 60 characters (found 61)',
        'README.md:9: "fullWidth" must be true or false (found "yes")',
        'README.md:10: "custom_headers" cross-origin-opener-policy must be one of [same-origin, same-origin-allow-popups, unsafe-none] (found "Same-Origin")',
        "packages.txt:2: '&&' is not a Debian package name; write one package name per line (lowercase letters, digits, + - .), comments start with #",
        "requirements.txt:2: --extra-index-url is not allowed: it changes where packages come from; the server's administrator sets the package index (build.pip_index_url)",
        "config.py:1: looks like a Hugging Face token (hf_a1B…); remove it from every commit of the push and store it on the server instead: spacehooks secrets set alice/demo NAME; "
        f"if it is no secret, confirm this one finding: git push -o secret-ok={fingerprint('config.py', b'hf_' + b'a1B2c3D4e5' * 3 + b'abcd')}",
    ]
    assert " !     warning: README.md:12: unknown key \"language\" is ignored" in remote_lines(result)
    assert (' !     warning: README.md:6: "python_version" 3.10 is not on this server: the Space runs on python 3.11, '
            'the nearest it has; an administrator can add 3.10 (spacehooks README, "Compatibility with the Hub")'
            in remote_lines(result))
    assert refs_and_objects(space) == before


def test_secret_in_an_earlier_commit_of_the_push_is_refused(server, space, tmp_path):
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "KEY='AKIAQ7ZL3MWX5RTB2KDY'\n"})
    work_repo(work, {"app.py": "import os\nKEY = os.environ['KEY']\n"}, "remove key")
    result = push(work, str(space))
    assert result.returncode != 0
    assert problems(result) == [
        "app.py:1: looks like an AWS access key id (AKIAQ7…); remove it from every commit of the push "
        "and store it on the server instead: spacehooks secrets set alice/demo NAME; if it is no secret, confirm "
        f"this one finding: git push -o secret-ok={fingerprint('app.py', b'AKIAQ7ZL3MWX5RTB2KDY')}"]


def test_allowed_secret_paths(server, space, tmp_path):
    server.configure(secret_scan={"allow_paths": ["tests/fixtures/*"]})
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "x=1\n",
                                      "tests/fixtures/key.pem": "-----BEGIN RSA PRIVATE KEY-----\nabc\n"})
    assert push(work, str(space)).returncode == 0


def test_missing_app_file_docker_without_dockerfile_and_no_readme(server, space, tmp_path):
    work = work_repo(tmp_path / "w", {"app.py": "x\n"})
    assert problems(push(work, str(space))) == [
        'README.md: is missing: a Space needs a README.md that starts with a YAML block setting at least "sdk"']
    work_repo(work, {"README.md": GRADIO_README.replace("app_file: app.py\n", ""), "app.py": None}, "no app")
    assert problems(push(work, str(space))) == [
        'README.md: "app_file" (default app.py for sdk gradio) does not exist in the repository; add it or set app_file to the main file']
    work_repo(work, {"README.md": DOCKER_README}, "docker")
    assert problems(push(work, str(space))) == [
        "Dockerfile: is missing: sdk docker builds the repository's own Dockerfile; add one at the root"]
    work_repo(work, {"README.md": STATIC_README}, "static")
    assert problems(push(work, str(space))) == [
        'README.md: "app_file" (default index.html for sdk static) does not exist in the repository; add it or set app_file to the main file']


def test_static_build_command_runs_at_build_so_app_file_may_be_built(server, space, tmp_path):
    """app_file is in what app_build_command builds (staticbuild.py): the commit need not hold
    it, and the push gets no warning; an app_file that would leave the repository is refused."""
    readme = STATIC_README.replace("sdk: static\n", "sdk: static\napp_build_command: npm run build\napp_file: dist/index.html\n")
    work = work_repo(tmp_path / "w", {"README.md": readme, "package.json": "{}\n"})
    result = push(work, str(space))
    assert result.returncode == 0, result.stdout
    assert "warning" not in result.stdout and "-----> Build #1 queued for alice/demo" in result.stdout, result.stdout
    work_repo(work, {"README.md": readme.replace("dist/index.html", "../dist/index.html")}, "outside")
    refused = problems(push(work, str(space)))
    assert len(refused) == 1 and refused[0].endswith(
        '"app_file" must stay inside the repository (no ".." parts) (found "../dist/index.html")'), refused


def test_app_file_symlink_out_of_the_repository(server, space, tmp_path):
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README.replace("app_file: app.py", "app_file: main.py")})
    (work / "main.py").symlink_to("/etc/passwd")
    (work / "inner.py").write_text("print(1)\n")
    work_repo(work, {}, "link")
    assert problems(push(work, str(space))) == [
        'README.md:8: "app_file" main.py is a symlink to /etc/passwd, outside the repository']
    (work / "main.py").unlink()
    (work / "main.py").symlink_to("inner.py")
    work_repo(work, {}, "inner link")
    assert push(work, str(space)).returncode == 0


def test_requirements_rules(server, space, tmp_path):
    work = work_repo(tmp_path / "w", {
        "README.md": GRADIO_README, "app.py": "x\n", "reqs/base.txt": "requests\n",
        "requirements.txt": "-r reqs/base.txt\n-r ../../other.txt\n-c /etc/constraints.txt\n"
                            "-i https://pypi.example/simple\n--trusted-host pypi.example\n-f ./wheels\n"
                            "pkg @ file:///srv/pkg.whl\nnot a requirement!\n./vendor/local.whl\n"
                            "torch==2.1 \\\n  --hash=sha256:abc\ngit+https://github.com/org/pkg@v1\n",
        "pre-requirements.txt": "pip==24.0\n--no-index\n",
    })
    assert problems(push(work, str(space))) == [
        'pre-requirements.txt:2: --no-index is not allowed: it changes where packages come from; the server\'s administrator sets the package index (build.pip_index_url)',
        'requirements.txt:2: -r ../../other.txt: the path must stay inside the repository (no ".." parts)',
        "requirements.txt:3: -c /etc/constraints.txt: absolute paths read outside the repository; use a path relative to the repository",
        "requirements.txt:4: --index-url is not allowed: it changes where packages come from; the server's administrator sets the package index (build.pip_index_url)",
        "requirements.txt:5: --trusted-host is not allowed: it changes where packages come from; the server's administrator sets the package index (build.pip_index_url)",
        "requirements.txt:6: --find-links is not allowed: it changes where packages come from; the server's administrator sets the package index (build.pip_index_url)",
        "requirements.txt:7: file: URLs read outside the repository; vendor the package into the repository and use a relative path such as ./wheels/pkg.whl",
        "requirements.txt:8: 'not a requirement!' is not a valid requirement; write a package name with an optional version, e.g. numpy==1.26.4",
        "requirements.txt:9: path ./vendor/local.whl: no such file in the pushed commit",
    ]


def test_deleting_the_deploy_branch_is_refused_other_branches_pass(server, space, tmp_path):
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "x\n"})
    assert push(work, str(space)).returncode == 0
    result = git("push", str(space), ":main", cwd=work, check=False)
    assert result.returncode != 0
    assert "Sorry, your push was rejected: deleting refs/heads/main would take alice/demo down." in result.stdout
    assert git("rev-parse", "main", cwd=space).returncode == 0
    work_repo(work, {"README.md": "broken"}, "wip")
    assert push(work, str(space), "wip").returncode == 0
    assert push(work, str(space), "refs/tags/v1").returncode == 0
    server.configure(check_other_refs=True)
    assert push(work, str(space), "wip2").returncode != 0


def test_internal_error_fails_closed_with_log_reference(server, space, tmp_path):
    server.config.write_text("repo_root: [unclosed\n")
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "x\n"})
    result = push(work, str(space))
    assert result.returncode != 0
    lines = remote_lines(result)
    assert any(line.startswith(" !     Sorry, your push was rejected: ") and "not valid YAML" in line for line in lines), lines
    assert "Traceback" not in result.stdout
    assert git("rev-parse", "--verify", "-q", "main", cwd=space, check=False).returncode != 0


def test_bug_in_checks_fails_closed_without_traceback(server, space, tmp_path):
    # A bug in a check (made here: the configuration is validated whole, so no bad setting
    # reaches the checks any more) must refuse the push with a log reference, not a traceback.
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import spacehooks.push.gate as g\n"
        "def broken(*a, **k):\n    raise ValueError('a bug in a check')\n"
        "g._check_capabilities = broken\n")
    readme = GRADIO_README.replace("sdk_version", "python_version: '3.11'\nsdk_version")
    work = work_repo(tmp_path / "w", {"README.md": readme, "app.py": "x\n"})
    result = push(work, str(space), env={**os.environ, "PYTHONPATH": str(inject)})
    assert result.returncode != 0
    lines = remote_lines(result)
    assert " !     Sorry, your push was rejected: the Space checks failed with an internal error." in lines
    ref_line = next(line for line in lines if "Reference for the administrator: " in line)
    log = ref_line.split("Reference for the administrator: ")[1]
    assert "ValueError" in open(log).read()
    assert "Traceback" not in result.stdout
    assert git("rev-parse", "--verify", "-q", "main", cwd=space, check=False).returncode != 0


def test_push_options_are_advertised(server, space):
    assert git("config", "receive.advertisePushOptions", cwd=space).stdout.strip() == "true"


def test_huge_binary_and_non_utf8_files(server, space, tmp_path):
    server.configure(max_file_bytes=4096)
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README + "x" * 5000, "app.py": "x\n"})
    assert problems(push(work, str(space))) == ["README.md: is 5133 bytes; at most 4096 bytes are allowed"]
    work_repo(work, {"README.md": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"}, "binary")
    assert problems(push(work, str(space))) == ["README.md: is a binary file; the README must be UTF-8 text"]
    work_repo(work, {"README.md": GRADIO_README, "requirements.txt": "caf\xe9\n".encode("latin-1")}, "latin1")
    assert problems(push(work, str(space))) == ["requirements.txt:1: is not valid UTF-8 (byte 0xe9); save it as UTF-8"]
    work_repo(work, {"requirements.txt": "numpy\n", "big.bin": bytes(range(256)) * 40000}, "big binary file is fine")
    assert push(work, str(space)).returncode == 0


def test_requirements_in_an_encoding_pip_reads_are_checked_as_pip_reads_them(server, space, tmp_path):
    # A real Space (SimpleDevs-Demos/streamlit-huggingface-demo) saved requirements.txt from Windows
    # as UTF-16 with a BOM: pip installs it (a BOM names the encoding), so the gate reads it
    # the same way, and still refuses what pip would be told to do by it.
    utf16 = "\ufeffstreamlit\r\ntransformers\r\n".encode("utf-16-le")
    work = work_repo(tmp_path / "w", {"README.md": GRADIO_README, "app.py": "x\n", "requirements.txt": utf16})
    result = push(work, str(space))
    assert result.returncode == 0, result.stdout
    work_repo(work, {"requirements.txt": "numpy\n--index-url https://x/simple\n".encode("utf-16")}, "utf-16 index")
    assert problems(push(work, str(space))) == [
        "requirements.txt:2: --index-url is not allowed: it changes where packages come from; the server's "
        "administrator sets the package index (build.pip_index_url)"]
    work_repo(work, {"requirements.txt": b"# -*- coding: latin-1 -*-\n-r ../caf\xe9.txt\n"}, "coding line")
    assert problems(push(work, str(space))) == [
        'requirements.txt:2: -r ../caf\xe9.txt: the path must stay inside the repository (no ".." parts)']
    work_repo(work, {"requirements.txt": b"\xff\xfe\x00"}, "truncated utf-16")
    assert problems(push(work, str(space))) == [
        "requirements.txt: is not valid utf-16, the encoding it names; save it as UTF-8"]


def test_crlf_bom_readme_is_accepted(server, space, tmp_path):
    readme = "\ufeff" + GRADIO_README.replace("\n", "\r\n").rstrip("\r\n").removesuffix("# Demo").rstrip("\r\n")
    work = work_repo(tmp_path / "w", {"README.md": readme.encode(), "app.py": "x\n"})
    result = push(work, str(space))
    assert result.returncode == 0, result.stdout


def test_concurrent_pushes_leave_one_winner_and_a_sound_repository(server, space, tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    base = work_repo(tmp_path / "base", {"README.md": GRADIO_README, "app.py": "x\n"})
    assert push(base, str(space)).returncode == 0
    works = []
    for i in range(4):
        clone = tmp_path / f"c{i}"
        git("clone", "-q", str(space), str(clone))
        works.append(work_repo(clone, {"app.py": f"print({i})\n"}, f"change {i}"))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda w: push(w, str(space)), works))
    winners = [w for w, r in zip(works, results) if r.returncode == 0]
    assert len(winners) == 1, [r.stdout for r in results]
    head = git("rev-parse", "main", cwd=space).stdout.strip()
    assert head == git("rev-parse", "HEAD", cwd=winners[0]).stdout.strip()
    assert git("fsck", "--no-progress", cwd=space, check=False).returncode == 0
