"""The README's YAML block: one declarative schema drives validation, messages and docs.

Values are built from yaml's node tree ourselves (not yaml.safe_load) so that every
problem carries a line number, numbers such as `3.10` are read as written, and alias
bombs or deep nesting hit a budget instead of the machine's memory.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any, Callable, NamedTuple

import yaml

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


class SpaceConfig:
    def __init__(self):
        self.values: dict = {}
        self.lines: dict = {}
        self.errors: list = []
        self.warnings: list = []

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    @property
    def sdk(self) -> str | None:
        return self.values.get("sdk")

    @property
    def app_file(self) -> str | None:
        return self.values.get("app_file") or DEFAULT_APP_FILE.get(self.sdk)

    @property
    def app_port(self) -> int:
        if self.sdk == "streamlit":
            return 8501
        return self.values.get("app_port", 7860) if self.sdk == "docker" else 7860

    def line_of(self, key: str) -> int | None:
        return self.lines.get(key)


class _Builder:
    """Builds python values from yaml nodes under a node budget and a depth limit."""

    def __init__(self):
        self.count = 0
        self.total = 0

    def start_key(self):
        self.total += self.count
        self.count = 0
        if self.total > MAX_TOTAL_NODES:
            raise Invalid(f"holds more than {MAX_TOTAL_NODES} values (YAML aliases count each time they are used)")

    def build(self, node, depth: int = 0):
        self.count += 1
        if self.count > MAX_NODES:
            raise Invalid(f"is too large (more than {MAX_NODES} values; YAML aliases count each time they are used)")
        if depth > MAX_DEPTH:
            raise Invalid(f"is nested more than {MAX_DEPTH} levels deep")
        if node.tag not in _STANDARD_TAGS:
            raise Invalid(f"uses the YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')}, which is not allowed")
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, depth + 1) for child in node.value]
        if isinstance(node, yaml.MappingNode):
            out = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, depth + 1)
                out[key if isinstance(key, (str, int, float, bool)) or key is None else str(key)] = self.build(value_node, depth + 1)
            return out
        raise Invalid("has an unsupported YAML node")


_CONSTRUCTOR = yaml.SafeLoader("")
_STANDARD_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")}


def _scalar(node):
    try:
        return _CONSTRUCTOR.construct_object(node, deep=False)
    except yaml.YAMLError:
        return node.value


def _compose(source: str):
    """libyaml when it is there (a push pays less); its error messages are terser, so a block
    it refuses is parsed again by the pure-Python parser, whose messages the docs show."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.compose(source, Loader=fast)
        except yaml.YAMLError:
            pass
    return yaml.compose(source, Loader=yaml.SafeLoader)


def split_front_matter(text_value: str) -> tuple[str, int] | None:
    """Return (yaml text, line offset of its first line) or None when there is no block."""
    lines = text_value.split("\n")
    if not lines or lines[0].rstrip() != "---":
        return None
    for i in range(1, len(lines)):
        if lines[i].rstrip() in ("---", "..."):
            return "\n".join(lines[1:i]), 1
    raise Invalid("the YAML block opened on line 1 is never closed: add a line with --- after it")


def decode(data: bytes, filename: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data[:8192]:
        raise Invalid("is a binary file; the README must be UTF-8 text")
    try:
        text_value = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise Invalid(f"is not valid UTF-8 (line {line}, byte 0x{data[exc.start]:02x}); save it as UTF-8")
    return text_value.replace("\r\n", "\n").replace("\r", "\n")


def readme_name(names) -> str | None:
    """The file the Hub reads as the README among a tree's root names: README.md, else a case
    variant (readme.md, Readme.md; the first in byte order when there are several)."""
    names = list(names)
    if "README.md" in names:
        return "README.md"
    variants = sorted(n for n in names if n.lower() == "readme.md")
    return variants[0] if variants else None


def parse(data: bytes, filename: str = "README.md") -> SpaceConfig:
    """Parse and validate the README; every problem found lands in `.errors`, not an exception."""
    cfg = SpaceConfig()

    def fail(message, line=None, key=None):
        cfg.errors.append(Problem(filename, line, message, key))
        return cfg

    try:
        text_value = decode(data, filename)
        block = split_front_matter(text_value)
    except Invalid as exc:
        return fail(exc.message)
    if block is None:
        return fail('has no YAML metadata block: start the file with a block between "---" lines that sets at least "sdk"')
    source, offset = block
    if len(source.encode()) > MAX_BLOCK_BYTES:
        return fail(f"YAML metadata block is larger than {MAX_BLOCK_BYTES // 1024} KiB", 2)
    try:
        root = _compose(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark and mark and context_mark.line != mark.line:
            problem += f" ({context} that starts on line {context_mark.line + 1 + offset})"
        return fail(f"invalid YAML: {problem}", mark.line + 1 + offset if mark else None)
    except RecursionError:
        return fail("YAML metadata block is nested too deeply", 2)
    if root is None:
        return fail('YAML metadata block is empty: set at least "sdk"', 1)
    if not isinstance(root, yaml.MappingNode):
        return fail("YAML metadata block must be a mapping of keys to values", root.start_mark.line + 1 + offset)
    builder = _Builder()
    seen: dict = {}
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1 + offset
        if not isinstance(key_node, yaml.ScalarNode):
            fail("keys must be plain names", line)
            continue
        name = key_node.value
        if name in seen:
            fail(f'"{name}" is set twice (first on line {seen[name]})', line, name)
            continue
        seen[name] = line
        try:
            builder.start_key()
        except Invalid as exc:
            return fail(f"YAML metadata block {exc.message}", line)
        try:
            value = builder.build(value_node)
        except Invalid as exc:
            fail(f'"{name}" {exc.message}', line, name)
            continue
        spec = KEYS_BY_NAME.get(name)
        if spec is None:
            cfg.warnings.append(Problem(filename, line, f'unknown key "{name}" is ignored', name))
            continue
        raw = value_node.value if isinstance(value_node, yaml.ScalarNode) else value
        try:
            cfg.values[name] = spec.check(value, raw)
            cfg.lines[name] = line
        except Invalid as exc:
            fail(f'"{name}" {exc.message}', line, name)
    if "sdk" not in cfg.values and "sdk" not in seen:
        fail(f'"sdk" is required: one of [{", ".join(SDKS)}]', 1 + offset, "sdk")
    _cross_checks(cfg, filename)
    return cfg


def _cross_checks(cfg: SpaceConfig, filename: str) -> None:
    sdk = cfg.sdk
    if sdk is None:
        return
    for name, value in cfg.values.items():
        spec = KEYS_BY_NAME[name]
        if spec.sdks and sdk not in spec.sdks:
            cfg.warnings.append(Problem(filename, cfg.lines[name],
                                        f'"{name}" is only used with sdk {" or ".join(spec.sdks)}; ignored for sdk {sdk}', name))
    app_file = cfg.values.get("app_file")
    if app_file is not None:
        problem = unsafe_path(app_file)
        if problem:
            del cfg.values["app_file"]
            cfg.errors.append(Problem(filename, cfg.lines["app_file"], f'"app_file" {problem} (found {_q(app_file)})', "app_file"))


def unsafe_path(path: str) -> str | None:
    if path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", path):
        return "must be relative to the repository root, not an absolute path"
    parts = re.split(r"[\\/]", path)
    if ".." in parts:
        return 'must stay inside the repository (no ".." parts)'
    if any(ord(c) < 32 for c in path):
        return "must not contain control characters"
    return None


def markdown_table() -> str:
    rows = ["| key | allowed values | meaning |", "|---|---|---|"]
    for k in KEYS:
        allowed = getattr(k.check, "doc", "")
        note = f" ({', '.join(k.sdks)} only)" if k.sdks else ""
        req = " **required**" if k.required else ""
        rows.append(f"| `{k.name}` | {allowed} | {k.help}{note}{req} |")
    return "\n".join(rows)
