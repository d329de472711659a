"""Rules for the dependency files: packages.txt (apt) and (pre-)requirements.txt (pip).

Each problem names the file and line, what was found and what to do instead.
"""
from __future__ import annotations

import codecs
import re
from typing import Callable, Iterator

from spacehooks.push.spaceconfig import Problem, unsafe_path

DEBIAN_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?(?:=[A-Za-z0-9.+~:-]+)?")
# Options that change where packages come from or what pip trusts.
SOURCE_OPTIONS = {
    "-i": "--index-url", "--index-url": "--index-url", "--extra-index-url": "--extra-index-url",
    "--trusted-host": "--trusted-host", "-f": "--find-links", "--find-links": "--find-links",
    "--no-index": "--no-index",
}
FILE_OPTIONS = {"-r", "--requirement", "-c", "--constraint"}
ALLOWED_OPTIONS = {"--pre", "--prefer-binary", "--only-binary", "--no-binary", "--hash",
                   "--use-feature", "--config-settings", "--global-option"}


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.rstrip("\r")


# pip reads a requirements file in the encoding a byte-order mark or a PEP 263 coding line in
# its first two lines names (pip's own table and order: utils/encoding.py auto_decode); the
# gate reads it the same way, so it checks the very lines pip will install.
PIP_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16-be"),
            (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF32, "utf-32"),
            (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF32_LE, "utf-32-le"))
CODING_LINE = re.compile(rb"coding[:=]\s*([-\w.]+)")


def pip_encoding(data: bytes) -> tuple[str, int] | None:
    """The encoding pip decodes a requirements file in and the bytes it skips, when the file
    names one; None: pip uses the locale's (UTF-8 in a build)."""
    for bom, encoding in PIP_BOMS:
        if data.startswith(bom):
            return encoding, len(bom)
    for line in data.split(b"\n")[:2]:
        match = CODING_LINE.search(line) if line[:1] == b"#" else None
        if match:
            return match.group(1).decode("ascii"), 0
    return None


def decode(data: bytes, filename: str, pip: bool = False) -> tuple[str | None, list[Problem]]:
    """The file's text; `pip`: a requirements file, read in the encoding pip would use."""
    named = pip_encoding(data) if pip else None
    if named and named[0] != "utf-8":
        encoding, skip = named
        try:
            return data[skip:].decode(encoding), []
        except (LookupError, ValueError):  # an unknown codec, bytes it cannot read (UnicodeError)
            return None, [Problem(filename, None, f"is not valid {encoding}, the encoding it names; "
                                                  f"save it as UTF-8")]
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:
        return None, [Problem(filename, None, "is a binary file; it must be text with one entry per line")]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return None, [Problem(filename, line, f"is not valid UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8")]


def check_packages(data: bytes, filename: str = "packages.txt") -> list[Problem]:
    text, problems = decode(data, filename)
    if text is None:
        return problems
    for number, line in _lines(text):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        for word in content.split():
            if not DEBIAN_NAME.fullmatch(word):
                problems.append(Problem(
                    filename, number,
                    f"{word!r} is not a Debian package name; write one package name per line "
                    f"(lowercase letters, digits, + - .), comments start with #"))
                break
    return problems


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Join backslash continuations as pip does, keeping the first line's number."""
    pending, start = "", 0
    for number, line in _lines(text):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _strip_comment(line: str) -> str:
    return re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()


def check_requirements(data: bytes, filename: str, exists: Callable[[str], bool]) -> list[Problem]:
    """`exists(path)` tells whether a repository-relative path is a file in the pushed tree."""
    text, problems = decode(data, filename, pip=True)
    if text is None:
        return problems
    base = filename.rsplit("/", 1)[0] + "/" if "/" in filename else ""
    for number, raw in _logical_lines(text):
        line = _strip_comment(raw)
        if not line:
            continue
        problem = _check_requirement_line(line, base, exists)
        if problem:
            problems.append(Problem(filename, number, problem))
    return problems


def _option(line: str) -> tuple[str, str]:
    if line.startswith("--"):
        name, _, value = line.partition("=") if "=" in line.split()[0] else (line.split()[0], "", line[len(line.split()[0]):])
        return name.strip(), value.strip()
    return line[:2], line[2:].strip()


def _check_requirement_line(line: str, base: str, exists: Callable[[str], bool]) -> str | None:
    for token in line.split():
        name = token.split("=", 1)[0] if token.startswith("--") else token[:2] if token.startswith("-") else None
        if name in SOURCE_OPTIONS:
            return (f"{SOURCE_OPTIONS[name]} is not allowed: it changes where packages come from; "
                    f"the server's administrator sets the package index (build.pip_index_url)")
    if line.startswith("-"):
        name, value = _option(line)
        if name in SOURCE_OPTIONS:
            return (f"{SOURCE_OPTIONS[name]} is not allowed: it changes where packages come from; "
                    f"the server's administrator sets the package index (build.pip_index_url)")
        if name in FILE_OPTIONS:
            return _check_local_path(value, base, exists, name)
        if name in ("-e", "--editable"):
            if re.match(r"^[a-z+]+://", value):
                return None
            return _check_local_path(value, base, exists, name, directory=True)
        if name in ALLOWED_OPTIONS:
            return None
        return f"option {name} is not allowed in a Space's requirements; remove it"
    if line.startswith("file:") or " @ file:" in line or "@file:" in line:
        return "file: URLs read outside the repository; vendor the package into the repository and use a relative path such as ./wheels/pkg.whl"
    if line.startswith(("/", "~")):
        return "absolute paths read outside the repository; use a path relative to the repository root"
    if line.startswith((".", "..")) or line.endswith((".whl", ".tar.gz", ".zip")) and "://" not in line:
        return _check_local_path(line.split(";")[0].strip(), base, exists, "path")
    if re.match(r"^[a-z+]+://", line) or " @ " in line and "://" in line:
        return None
    # per-requirement options (--hash, --config-settings) follow the requirement itself
    from packaging.requirements import InvalidRequirement, Requirement  # lazily: most pushes change no requirements line
    requirement = re.split(r"\s+--?[a-z]", line, maxsplit=1)[0]
    try:
        Requirement(requirement)
    except InvalidRequirement:
        return f"{line!r} is not a valid requirement; write a package name with an optional version, e.g. numpy==1.26.4"
    return None


def _check_local_path(value: str, base: str, exists: Callable[[str], bool], option: str,
                      directory: bool | None = False) -> str | None:
    if not value:
        return f"{option} needs a file name"
    if value.startswith(("/", "~")) or value.startswith("file:"):
        return f"{option} {value}: absolute paths read outside the repository; use a path relative to the repository"
    problem = unsafe_path(value)
    relative = (base + value).removeprefix("./")
    while "/./" in relative:
        relative = relative.replace("/./", "/")
    if problem:
        return f"{option} {value}: {problem.replace('must', 'the path must')}"
    if directory is False and not exists(relative):
        return f"{option} {value}: no such file in the pushed commit"
    return None
