"""spacehooks' own log lines (to stderr, readable by journald) and size-based rotation of
the build and run log files the engine writes.

Under systemd (JOURNAL_STREAM set) each line starts with a `<N>` syslog priority, which
journald turns into the entry's level and strips; elsewhere lines carry a time and level.
"""
from __future__ import annotations

import logging
import os
import sys
from collections import deque
from pathlib import Path
from typing import TextIO

# syslog priorities journald understands as line prefixes (sd-daemon.h)
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        priority = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        # a traceback spans lines: each gets the prefix, or journald files them at INFO
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def setup_logging(level: str | int = "INFO", stream: TextIO | None = None,
                  journal: bool | None = None) -> logging.Logger:
    """Configure the `spacehooks` logger once per process (serve, worker, gateway)."""
    if journal is None:
        journal = bool(os.environ.get("JOURNAL_STREAM"))
    handler = logging.StreamHandler(stream or sys.stderr)
    if journal:  # journald adds the time and the unit's name itself
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger("spacehooks")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level if isinstance(level, int) else level.upper())
    logger.propagate = False
    return logger


def rotated_name(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def rotate(path: str | os.PathLike, settings) -> bool:
    """Rotate `path` when it has reached `logs.max_bytes`: path -> path.1 -> ... -> path.<keep>.

    Returns whether it rotated. The caller reopens the file afterwards (a process writing
    through an open handle keeps writing to path.1). `logs.keep` 0 just truncates.
    """
    path = Path(path)
    max_bytes, keep = int(settings["logs.max_bytes"]), int(settings["logs.keep"])
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if max_bytes <= 0 or size < max_bytes:
        return False
    if keep <= 0:
        path.unlink()
        return True
    rotated_name(path, keep).unlink(missing_ok=True)
    for n in range(keep - 1, 0, -1):
        older = rotated_name(path, n)
        if older.exists():
            older.replace(rotated_name(path, n + 1))
    path.replace(rotated_name(path, 1))
    # files from a larger `keep` setting of the past would never go away otherwise
    n = keep + 1
    while rotated_name(path, n).exists():
        rotated_name(path, n).unlink()
        n += 1
    return True


class CappedLog:
    """A build log that keeps its head and tail once it passes `logs.max_bytes`.

    The file is only ever appended to: post-receive follows it by offset while the build
    runs. Past half the limit, lines wait in a bounded tail buffer; `end()` writes how many
    bytes were left out and then that tail. Lines after `end()` (deploy steps) go straight on.
    """

    def __init__(self, fh: TextIO, max_bytes: int):
        self._fh = fh
        self._head_left = max_bytes // 2 if max_bytes > 0 else -1
        self._tail_budget = max_bytes - max_bytes // 2
        self._tail: deque[str] = deque()
        self._tail_bytes = 0
        self._dropped = 0
        self._capping = max_bytes > 0

    def write(self, line: str) -> None:
        line = line.rstrip("\n") + "\n"
        size = len(line.encode(errors="replace"))
        if not self._capping or self._head_left < 0 or (not self._tail and size <= self._head_left):
            if self._capping and self._head_left >= 0:
                self._head_left -= size
            self._fh.write(line)
            return
        if not self._tail and not self._dropped:
            self._fh.write(MIDDLE_NOTE)
        self._head_left = 0
        self._tail.append(line)
        self._tail_bytes += size
        while self._tail_bytes > self._tail_budget and self._tail:
            gone = len(self._tail.popleft().encode(errors="replace"))
            self._tail_bytes -= gone
            self._dropped += gone

    def end(self) -> None:
        if self._dropped:
            self._fh.write(DROPPED_NOTE.format(n=self._dropped))
        self._fh.writelines(self._tail)
        self._tail.clear()
        self._dropped = 0
        self._capping = False


MIDDLE_NOTE = "[spacehooks] the build log passed logs.max_bytes: its end follows when the build ends\n"
DROPPED_NOTE = "[spacehooks] {n} bytes of build output left out (logs.max_bytes)\n"


class Lines:
    """Whole lines out of text that arrives in pieces: Podman's build stream sends what a RUN
    step writes as it writes it, one character at a time for curl's or apt's progress, and a
    piece is no line. A piece without an end of line waits for the rest (at most MAX
    characters: an endless progress bar is still shown)."""

    MAX = 65536

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> list[str]:
        parts = (self._pending + text).splitlines(keepends=True)
        self._pending = parts.pop() if parts and not parts[-1].endswith(("\n", "\r")) else ""
        if len(self._pending) > self.MAX:
            parts.append(self._pending)
            self._pending = ""
        return [part.rstrip("\r\n") for part in parts]

    def end(self) -> list[str]:
        rest, self._pending = self._pending, ""
        return [rest] if rest else []
