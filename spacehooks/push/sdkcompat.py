"""What each SDK version needs installed beside it, so Spaces run without pinning anything.

The base image carries the newest huggingface_hub, fastapi and altair; older SDK releases cannot
import or serve with those. Each rule is data: the SDK, the versions it applies to, what the SDK
layer installs with it, and why (README's compatibility table is made from the same rules).
"""
from __future__ import annotations

from typing import NamedTuple

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version


class Rule(NamedTuple):
    sdk: str
    versions: str          # a PEP 440 specifier set; "" matches every version
    extra: tuple[str, ...]  # requirements installed in the same pip step as the SDK
    why: str


RULES = (
    Rule("gradio", "<5", ("huggingface_hub<1", "datasets", "starlette<1"),
         "gradio 4 and older import `HfFolder`, which huggingface_hub 1.0 removed (`datasets` is "
         "resolved again to a release that works with it), and render pages with the "
         "`TemplateResponse(name, context)` form that Starlette 1.0 no longer takes"),
    Rule("streamlit", "<1.23", ("altair<5",),
         "streamlit before 1.23 imports `altair.vegalite.v4`, gone in altair 5"),
    Rule("streamlit", "<1.20", ("protobuf<4", "numpy<2", "pyarrow<15"),
         "streamlit before 1.20 was built against protobuf 3 and numpy 1 (newer pyarrow needs numpy 2)"),
    Rule("streamlit", ">=1.20,<1.36", ("numpy<2", "pyarrow<19", "datasets"),
         "streamlit before 1.36 requires numpy<2, with which the base image's pyarrow (built for numpy 2) "
         "does not import; 18 is tested with numpy 1 (`datasets` is resolved again to a release that "
         "works with it)"),
)

# The Hub pre-installs its `spaces` package (ZeroGPU decorators) in gradio Spaces; it needs
# Python 3.10 or newer and depends on gradio, so it goes into the SDK's own pip step, where the
# pinned gradio satisfies that dependency instead of pulling a second gradio.
SPACES_PACKAGE = "spaces"
SPACES_MIN_PYTHON = (3, 10)


def _version(text) -> Version | None:
    try:
        return Version(str(text))
    except InvalidVersion:
        return None


def _python(text) -> tuple[int, int] | None:
    parts = str(text or "").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def requirements(sdk: str, sdk_version, python_version) -> list[str]:
    """The requirements the SDK layer installs: the SDK itself, then what that version needs."""
    package = {"gradio": "gradio", "streamlit": "streamlit"}[sdk]
    wanted = [f"{package}=={sdk_version}" if sdk_version else package]
    version = _version(sdk_version) if sdk_version else None
    for rule in RULES:
        if rule.sdk != sdk:
            continue
        # no sdk_version means the newest release, which needs none of the old-version rules
        if version is not None and version in SpecifierSet(rule.versions):
            wanted += [r for r in rule.extra if r not in wanted]
    python = _python(python_version)
    if sdk == "gradio" and (python is None or python >= SPACES_MIN_PYTHON):
        wanted.append(SPACES_PACKAGE)
    return wanted


def markdown_table() -> str:
    """README's table of these rules (tests/test_docs.py keeps the two equal)."""
    rows = [f"| {r.sdk} {r.versions} | {', '.join(f'`{e}`' for e in r.extra)} | {r.why} |" for r in RULES]
    return "\n".join(["| SDK versions | also installed | why |", "|---|---|---|", *rows])
