"""The README's YAML block: one declarative schema (spacekeys.py) drives validation, messages
and docs; this module parses the block and applies it.

Values are built from yaml's node tree ourselves (not yaml.safe_load) so that every
problem carries a line number, numbers such as `3.10` are read as written, and alias
bombs or deep nesting hit a budget instead of the machine's memory.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

# the schema is spacekeys.py's; its names stay reachable here, where callers have always found them
from spacehooks.push.spacekeys import (  # noqa: F401
    COLORS, DEFAULT_APP_FILE, GRADIO_PORT, HARDWARE, HEADERS, KEYS, KEYS_BY_NAME, MAX_BLOCK_BYTES, MAX_DEPTH,
    MAX_NODES, MAX_TOTAL_NODES, SDKS, STREAMLIT_PORT, Invalid, Key, Problem, _q, app_port, is_static)


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
        return app_port(self.values)

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
