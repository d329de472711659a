"""`python:3.x`-compatible images, made from a base image without a registry, for docker
Spaces whose Dockerfile starts `FROM python:3.x` on a server that reaches no registry
(`build.image_aliases` maps the name to one of these).

What such a Dockerfile expects of the official python images, and what this image gives:
python, python3, pip and pip3 on PATH (and in /usr/local/bin), `pip install` allowed as root
and as the user it adds (no externally-managed refusal; the venv's site-packages belong to uid
1000, the uid the Hub's template gives its user), `useradd` available and uid 1000 free (the
base image's own `user` is removed, so `useradd -m -u 1000 user` works), WORKDIR /, root.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Callable

from spacehooks import engine, proc
from spacehooks.build import baseimage
from spacehooks.errors import SpaceError

RECIPE_VERSION = 1
CONTAINERFILE = """FROM {base}
USER root
WORKDIR /
RUN userdel --remove user 2>/dev/null; rm -rf /home/user \\
 && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \\
 && for tool in python python3 pip pip3; do ln -sf {venv}/bin/$tool /usr/local/bin/$tool; done \\
 && command -v useradd >/dev/null && python3 -m pip --version >/dev/null
ENV PYTHON_VERSION={python}
LABEL {label}={digest} io.spacehooks.python={python} io.spacehooks.compat-of={base}
CMD ["python3"]
"""


def reference(python: str) -> str:
    return f"{baseimage.OURS}python-compat:{python}"


def _containerfile(base: str, python: str, base_digest: str) -> tuple[str, str]:
    digest = hashlib.sha256(f"{RECIPE_VERSION} {base} {base_digest} {CONTAINERFILE}".encode()).hexdigest()[:16]
    return CONTAINERFILE.format(base=base, python=python, venv=baseimage.VENV, label=baseimage.LABEL,
                                digest=digest), digest


def build(settings, python: str, force: bool, echo: Callable[[str], None]) -> str:
    """Make localhost/spacehooks/python-compat:PYTHON from the server's base image for that
    python (which `base-image build` made first); returns "current" or "built"."""
    base = settings["python_versions"].get(python, baseimage.default_reference(python))
    eng = engine.get(settings)
    base_labels = baseimage.image_labels(eng, base)
    if base_labels is None:
        raise SpaceError(f"base image {base} for python {python} is missing",
                         hint=f"spacehooks base-image build --python {python}")
    target = reference(python)
    text, digest = _containerfile(base, python, base_labels.get(baseimage.LABEL, "registry"))
    labels = baseimage.image_labels(eng, target)
    if not force and labels is not None and labels.get(baseimage.LABEL) == digest:
        echo(f"-----> {target} is up to date (recipe {digest})")
    else:
        echo(f"-----> Building {target} from {base} (python:{python}-compatible)")
        with tempfile.TemporaryDirectory(prefix="spacehooks-compat-") as tmp:
            (Path(tmp) / "Containerfile").write_text(text)
            result = proc.run(["podman", "--url", settings["podman_url"], "build", "--network", "none",
                               "--pull=never", "--tag", target, "--file", str(Path(tmp) / "Containerfile"), tmp],
                              check=False, timeout=900)
        if result.returncode != 0:
            tail = "\n".join(result.stderr.decode(errors="replace").strip().splitlines()[-10:])
            raise SpaceError(f"building {target} failed:\n{tail}")
        echo(f"       built {target}")
    echo("       docker Spaces get it for `FROM python:3.x` with this in the server config:\n"
         "         build:\n"
         "           image_aliases:\n"
         f"             \"python:{python}*\": {target}\n"
         f"             \"python:3*\": {target}   # every other python 3 tag too, if this server has no other")
    return "current" if labels is not None and labels.get(baseimage.LABEL) == digest and not force else "built"
