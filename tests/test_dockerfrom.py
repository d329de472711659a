"""How a docker Space's Dockerfile names its images (dockerfrom.py): Docker Hub short names
qualified as Docker reads them, admin aliases, stage names left alone."""
from spacehooks.build import dockerfrom

ALIASES = {"python:3.*": "localhost/spacehooks/python-compat:3.11", "ubuntu": "localhost/debian:12"}


def test_short_names_are_docker_hub_names():
    assert {r: dockerfrom.qualify(r) for r in [
        "python:3.10", "python", "user/app", "docker.io/python:3", "index.docker.io/library/node:20",
        "ghcr.io/owner/image:1", "localhost/spacehooks/python:3.11", "localhost:5000/a", "ubuntu:22.04@sha256:ab"]} == {
        "python:3.10": "docker.io/library/python:3.10",
        "python": "docker.io/library/python:latest",
        "user/app": "docker.io/user/app:latest",
        "docker.io/python:3": "docker.io/library/python:3",
        "index.docker.io/library/node:20": "docker.io/library/node:20",
        "ghcr.io/owner/image:1": "ghcr.io/owner/image:1",
        "localhost/spacehooks/python:3.11": "localhost/spacehooks/python:3.11",
        "localhost:5000/a": "localhost:5000/a:latest",
        "ubuntu:22.04@sha256:ab": "docker.io/library/ubuntu:22.04@sha256:ab"}


def test_aliases_match_the_qualified_name_first_pattern_wins():
    assert dockerfrom.resolve(ALIASES, "python:3.11-slim") == ("localhost/spacehooks/python-compat:3.11", "python:3.*")
    assert dockerfrom.resolve(ALIASES, "docker.io/library/python:3.9") == ("localhost/spacehooks/python-compat:3.11", "python:3.*")
    assert dockerfrom.resolve(ALIASES, "python:2.7") == ("docker.io/library/python:2.7", None)
    assert dockerfrom.resolve(ALIASES, "ubuntu:22.04") == ("localhost/debian:12", "ubuntu")  # no tag: any tag
    assert dockerfrom.resolve(ALIASES, "someone/python:3.11") == ("docker.io/someone/python:3.11", None)
    assert dockerfrom.resolve({"python:3.11*": "a", "python:3*": "b"}, "python:3.11.4") == ("a", "python:3.11*")


def test_rewrite_touches_images_not_stages_indexes_or_variables():
    text = ("# syntax note\nFROM python:3.9 AS builder\nFROM --platform=linux/amd64 ubuntu:22.04\n"
            "COPY --from=builder /a /b\nCOPY --from=0 /a /b\nCOPY --chown=1 --from=node:20 /x /y\n"
            "RUN --mount=type=bind,from=python:3.11-slim,target=/x true\nFROM builder\nFROM $BASE\nFROM scratch\n")
    rewritten, uses = dockerfrom.rewrite(ALIASES, text)
    assert rewritten.splitlines() == [
        "# syntax note", "FROM localhost/spacehooks/python-compat:3.11 AS builder",
        "FROM --platform=linux/amd64 localhost/debian:12", "COPY --from=builder /a /b", "COPY --from=0 /a /b",
        "COPY --chown=1 --from=docker.io/library/node:20 /x /y",
        "RUN --mount=type=bind,from=localhost/spacehooks/python-compat:3.11,target=/x true",
        "FROM builder", "FROM $BASE", "FROM scratch"]
    assert [dockerfrom.describe(u) for u in uses] == [
        "line 2: python:3.9 -> localhost/spacehooks/python-compat:3.11 (build.image_aliases 'python:3.*')",
        "line 3: ubuntu:22.04 -> localhost/debian:12 (build.image_aliases 'ubuntu')",
        "line 6: node:20 -> docker.io/library/node:20",
        "line 7: python:3.11-slim -> localhost/spacehooks/python-compat:3.11 (build.image_aliases 'python:3.*')"]


def test_only_a_failed_pull_is_explained():
    _, uses = dockerfrom.rewrite({}, "FROM python:3.10\nRUN false\n")
    pulled = ('creating build container: initializing source docker://python:3.10: pinging container registry '
              'registry-1.docker.io: Get "https://registry-1.docker.io/v2/": dial tcp: no such host')
    assert dockerfrom.explain(pulled, uses).startswith(
        "image python:3.10 (Dockerfile line 1) could not be pulled as docker.io/library/python:3.10 (creating build")
    assert dockerfrom.explain("building at STEP \"RUN false\": while running runtime: exit status 1", uses) is None


def test_a_failed_pull_suggests_an_alias_that_fits_the_image():
    # seen with real Spaces: FROM ubuntu:22.04 and FROM alpine:latest were told to alias
    # "python:3.*" to the python-compat image, which stands in for neither
    said = ('creating build container: initializing source docker://{}: pinging container registry '
            'registry-1.docker.io: Get "https://registry-1.docker.io/v2/": dial tcp: no such host')
    cases = {
        "python:3.10-slim": '"python:3.*": localhost/spacehooks/python-compat:3.11 (made by `spacehooks base-image '
                            'build --compat 3.11`)',
        "ubuntu:22.04": '"ubuntu": an image of it loaded into the Podman service (`podman load`); '
                        'localhost/spacehooks/python-compat stands in for the official python images only',
        "ghcr.io/owner/app:1@sha256:ab": '"ghcr.io/owner/app": an image of it loaded into the Podman service '
                                         '(`podman load`); localhost/spacehooks/python-compat stands in for the '
                                         'official python images only',
    }
    for image, example in cases.items():
        _, uses = dockerfrom.rewrite({}, f"FROM {image}\n")
        message = dockerfrom.explain(said.format(image), uses)
        assert message.endswith(f"maps it to a local image with build.image_aliases, e.g. {example}"), message
