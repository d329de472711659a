"""The certificate authorities builds and running Spaces trust (servers behind a TLS-inspecting proxy).

Builds through Podman's API cannot mount host folders, so the bundle travels as a build
secret: Buildah mounts it at /run/secrets/<id> for the one RUN step that names it, and it
is never part of a layer. Every RUN of a Space's build names it (the SDK steps written by
builder.py, and each RUN of a docker Space's own Dockerfile through buildmounts.py), and
the variables the usual tools read point at it. Running Spaces get the bundle read-only by
a bind mount, outside the home folder (a tmpfs) and outside /run/secrets.
"""
from __future__ import annotations

import os
from pathlib import Path

from spacehooks.errors import SpaceError

HOST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SECRET = "spacehooks-ca"
SECRET_PATH = f"/run/secrets/{SECRET}"
# apt reads the file named by APT_CONFIG before its own configuration: the only way to give it
# a CA file without writing into the image's /etc/apt
APT_SECRET = "spacehooks-ca-apt"
APT_PATH = f"/run/secrets/{APT_SECRET}"
RUN_PATH = "/etc/spacehooks/ca.crt"
# what pip, requests, OpenSSL (python's ssl, curl), curl, Node.js and git read for their CAs
ENV_NAMES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
             "GIT_SSL_CAINFO")
AUTO = "auto"


def bundle(settings, key: str = "build.ca_bundle") -> str | None:
    """The bundle file a setting names: `auto` is the host's own bundle when it exists;
    an empty value or `none` gives no CA."""
    value = str(settings[key] or "").strip()
    if value.lower() in ("", "none"):
        return None
    if value.lower() == AUTO:
        return HOST_BUNDLE if os.path.isfile(HOST_BUNDLE) else None
    return value


def read(path: str, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SpaceError(f"{key} {path}: cannot read ({exc.strerror})",
                         hint=f"point {key} at a readable PEM file, `auto` for {HOST_BUNDLE}, or `none`") from exc


def build_secrets(settings) -> dict[str, bytes]:
    """The build secrets that carry the CA into every RUN step (empty when no CA is set)."""
    path = bundle(settings)
    if path is None:
        return {}
    return {SECRET: read(path, "build.ca_bundle"),
            APT_SECRET: f'Acquire::https::CaInfo "{SECRET_PATH}";\n'.encode()}


def mount_flags() -> str:
    # readable by every uid: a Dockerfile's RUN steps after `USER user` (the Hub's template runs
    # pip so) could not open Buildah's default root-only 0400 mount; a CA bundle is no secret
    return f"--mount=type=secret,id={SECRET},mode=0444 --mount=type=secret,id={APT_SECRET},mode=0444"


def shell_prefix() -> str:
    """Exports for a shell-form RUN; a value the Dockerfile set itself (ENV) wins."""
    pairs = [(name, SECRET_PATH) for name in ENV_NAMES] + [("APT_CONFIG", APT_PATH)]
    return "export " + " ".join(f'{name}="${{{name}:-{value}}}"' for name, value in pairs) + "; "


def run_env(settings) -> dict[str, str]:
    """Variables a running Space gets for `run.ca_bundle` (empty when none is set)."""
    return {name: RUN_PATH for name in ENV_NAMES} if bundle(settings, "run.ca_bundle") else {}


def run_mounts(settings) -> list[dict]:
    path = bundle(settings, "run.ca_bundle")
    if path is None:
        return []
    if not os.access(path, os.R_OK):
        raise SpaceError(f"run.ca_bundle {path}: cannot read",
                         hint=f"point run.ca_bundle at a readable PEM file, `auto` for {HOST_BUNDLE}, or `none`")
    return [{"type": "bind", "source": os.path.realpath(path), "target": RUN_PATH, "read_only": True}]
