"""The README YAML block's keys: each key's check, help and sdks (`KEYS`), the value checkers,
and the defaults every module reads from one place (`app_port`, `is_static`). The parser that
applies them, with line numbers and budgets, is spaceconfig.py."""
from __future__ import annotations

import re
import unicodedata
from typing import Any, Callable, NamedTuple

COLORS = ["red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"]
SDKS = ["gradio", "streamlit", "docker", "static"]
HARDWARE = ["cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4",
            "l40sx8", "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large",
            "a100x4", "a100x8"]
HEADERS = {
    "cross-origin-embedder-policy": ["require-corp", "credentialless", "unsafe-none"],
    "cross-origin-opener-policy": ["same-origin", "same-origin-allow-popups", "unsafe-none"],
    "cross-origin-resource-policy": ["same-site", "same-origin", "cross-origin"],
}
MAX_NODES = 5000
MAX_TOTAL_NODES = 20000
MAX_DEPTH = 20
MAX_BLOCK_BYTES = 64 * 1024


# NamedTuples and plain classes, not dataclasses: building a dataclass costs ~1 ms at import,
# which every push pays (bench/push_overhead).
class Problem(NamedTuple):
    file: str
    line: int | None
    message: str
    key: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class Invalid(Exception):
    def __init__(self, message: str):
        self.message = message


def _q(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return '"' + text.replace('"', '\\"') + '"'


# ---- value checkers: each takes (node value, raw text) and returns the clean value or raises Invalid

def _string(value, raw):
    if isinstance(value, (dict, list)) or value is None:
        raise Invalid(f"must be a string (found {_describe(value)})")
    return raw if not isinstance(value, str) else value


def _describe(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return _q(value)


def one_of(choices):
    def check(value, raw):
        text = _string(value, raw)
        if text not in choices:
            raise Invalid(f"must be one of [{', '.join(choices)}] (found {_q(text)})")
        return text
    check.doc = "one of " + ", ".join(f"`{c}`" for c in choices)
    return check


def matching(pattern: str, what: str, max_len: int | None = None):
    def check(value, raw):
        text = _string(value, raw)
        if max_len is not None and len(text) > max_len:
            raise Invalid(f"must be at most {max_len} characters (found {len(text)})")
        if not re.fullmatch(pattern, text):  # compiled on first use: a push pays only for its keys
            raise Invalid(f"must be {what} (found {_q(text)})")
        return text
    check.doc = what + (f", at most {max_len} characters" if max_len else "")
    return check


def text(max_len: int | None = None):
    def check(value, raw):
        result = _string(value, raw)
        if max_len is not None and len(result) > max_len:
            raise Invalid(f"must be at most {max_len} characters (found {len(result)})")
        return result
    check.doc = "text" + (f", at most {max_len} characters" if max_len else "")
    return check


def boolean(value, raw):
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false (found {_describe(value)})")
    return value
boolean.doc = "`true` or `false`"


def integer(low: int, high: int):
    def check(value, raw):
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be a whole number (found {_describe(value)})")
        if not low <= value <= high:
            raise Invalid(f"must be between {low} and {high} (found {value})")
        return value
    check.doc = f"whole number from {low} to {high}"
    return check


def list_of(item: Callable, single_ok: bool = True):
    def check(value, raw):
        if isinstance(value, str) and single_ok:
            value = [value]
        if not isinstance(value, list):
            raise Invalid(f"must be a list of strings (found {_describe(value)})")
        out = []
        for i, element in enumerate(value):
            try:
                out.append(item(element, element if isinstance(element, str) else str(element)))
            except Invalid as exc:
                raise Invalid(f"item {i + 1} {exc.message}")
        return out
    check.doc = "list of " + getattr(item, "doc", "strings")
    return check


_EMOJI_CATEGORIES = {"So", "Sk", "Mn", "Me", "Cf", "Cn", "Co"}
_KEYCAP_BASES = set("0123456789#*")


def emoji(value, raw):
    text_value = _string(value, raw).strip()
    if not text_value or len(text_value) > 40:
        raise Invalid(f"must be one or a few emoji (found {_q(text_value)})")
    for i, ch in enumerate(text_value):
        cat = unicodedata.category(ch)
        if cat in _EMOJI_CATEGORIES:
            continue
        follower = text_value[i + 1] if i + 1 < len(text_value) else ""
        if ch in _KEYCAP_BASES and follower in ("\ufe0f", "\u20e3"):
            continue
        if ch in "\u00a9\u00ae\u203c\u2049" or 0x2190 <= ord(ch) <= 0x2bff:
            continue  # arrows and symbols that have emoji presentations
        raise Invalid(f"must contain emoji only (found {_q(text_value)})")
    return text_value
emoji.doc = "emoji only (sequences and several emoji allowed)"


def headers(value, raw):
    if not isinstance(value, dict):
        raise Invalid(f"must be a mapping of header names to values (found {_describe(value)})")
    for name, header_value in value.items():
        if name not in HEADERS:
            raise Invalid(f"may only set [{', '.join(HEADERS)}] (found {_q(str(name))})")
        allowed = HEADERS[name]
        if not isinstance(header_value, str) or header_value not in allowed:
            raise Invalid(f"{name} must be one of [{', '.join(allowed)}] (found {_describe(header_value)})")
    return dict(value)
headers.doc = "mapping; keys " + ", ".join(f"`{h}`" for h in HEADERS) + ", lowercase values"


def str_or_list(value, raw):
    if isinstance(value, list):
        return list_of(text())(value, raw)
    return _string(value, raw)
str_or_list.doc = "string or list of strings"


DURATION = matching(r"(?:[1-9]\d*[smhd])+|0*[1-9]\d*[smhd]", "a duration such as 30m, 1h or 1h30m")
REPO_ID = r"[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?"


class Key(NamedTuple):
    name: str
    check: Callable
    help: str
    sdks: tuple = ()          # empty: any sdk; else the key only means something for these
    required: bool = False


KEYS = [
    Key("title", text(100), "Display title."),
    Key("emoji", emoji, "Card emoji."),
    Key("colorFrom", one_of(COLORS), "Card gradient start."),
    Key("colorTo", one_of(COLORS), "Card gradient end."),
    Key("sdk", one_of(SDKS), "How the Space is built and run.", required=True),
    Key("sdk_version", matching(r"\d+(?:\.\d+){0,3}(?:(?:a|b|rc|\.dev|\.post)\d+)?", "a version such as 4.44.1"),
        "Version of gradio or streamlit to install.", ("gradio", "streamlit")),
    Key("python_version", matching(r"3\.\d{1,2}(?:\.\d{1,2})?", "3.x or 3.x.x"), "Python of the base image: the server's own for that version, else the nearest it has, with a warning at push (or refused: setting python_version_fallback)."),
    Key("app_file", matching(r"[^\x00]{1,255}", "a path inside the repository"), "Main file, relative to the repository root (default `app.py`; `index.html` for static)."),
    Key("app_port", integer(1, 65535), "Port the app listens on (default 7860).", ("docker",)),
    Key("base_path", matching(r"/[^\s]*", "a path starting with /"), "Initial URL path the Space page opens."),
    Key("fullWidth", boolean, "Use the full width of the page (default true)."),
    Key("header", one_of(["mini", "default"]), "Space page header style."),
    Key("short_description", text(60), "Card subtitle."),
    Key("models", list_of(matching(REPO_ID, "a model id")), "Models the Space uses."),
    Key("datasets", list_of(matching(REPO_ID, "a dataset id")), "Datasets the Space uses."),
    Key("tags", list_of(text(100)), "Tags."),
    Key("thumbnail", matching(r"https?://\S+", "an http(s) URL"), "Social thumbnail URL."),
    Key("pinned", boolean, "Show first in the gallery."),
    Key("license", matching(r"[a-z0-9][a-z0-9.+-]*", "a lowercase license identifier such as apache-2.0 or mit"), "License identifier."),
    Key("suggested_hardware", one_of(HARDWARE), "Informational: hardware the author suggests (shown on the Space page)."),
    Key("suggested_storage", one_of(["small", "medium", "large"]), "Informational; ignored."),
    Key("app_build_command", text(1000), "Static Spaces: a build command (e.g. `npm ci && npm run build`), run at build time with Node.js and npm; the folder holding `app_file` in what it built is served.", ("static",)),
    Key("disable_embedding", boolean, "Forbid embedding the Space in other sites."),
    Key("startup_duration_timeout", DURATION, "Time the app may take to answer after start (default 30m)."),
    Key("custom_headers", headers, "Extra response headers for the app."),
    Key("preload_from_hub", list_of(matching(REPO_ID + r"(?: [^\s,]+(?:,[^\s,]+)*(?: [0-9a-f]{7,40})?)?", "`repo`, `repo f1,f2` or `repo f1,f2 sha`")), "Hub files fetched at build time."),
    Key("hf_oauth", boolean, "Enable OAuth sign-in."),
    Key("hf_oauth_scopes", list_of(matching(r"[a-z][a-z0-9-]*", "a scope name such as email or read-repos")), "Extra OAuth scopes."),
    Key("hf_oauth_expiration_minutes", integer(1, 43200), "OAuth token lifetime (default 480)."),
    Key("hf_oauth_authorized_org", str_or_list, "Organisations whose members may sign in."),
    Key("duplicated_from", matching(REPO_ID, "a Space id such as owner/name"), "Set on copies."),
]
KEYS_BY_NAME = {k.name: k for k in KEYS}
DEFAULT_APP_FILE = {"gradio": "app.py", "streamlit": "app.py", "static": "index.html", "docker": None}
GRADIO_PORT = 7860  # gradio's default, and the Hub's for docker Spaces without app_port
STREAMLIT_PORT = 8501


def app_port(values: dict) -> int:
    """The port the Space's app listens on inside its container, from its README values."""
    if values.get("sdk") == "streamlit":
        return STREAMLIT_PORT
    return int(values.get("app_port") or GRADIO_PORT) if values.get("sdk") == "docker" else GRADIO_PORT


def is_static(values: dict) -> bool:
    """A static Space: no image, no container; the gateway serves the commit's files."""
    return values.get("sdk") == "static"
