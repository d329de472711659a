"""The one error type shown to users, and the top-level handler for everything else."""
from __future__ import annotations

import datetime
import os
import sys
import tempfile
import traceback
from pathlib import Path


class SpaceError(Exception):
    """An error the user can fix: its message says what and how.

    Independent of click, so the push path and the HTTP API raise it without importing the
    CLI's toolkit; cli.main and the gateway each translate it in one place."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.format_message()

    def format_message(self) -> str:
        if self.hint:
            return f"{self.message}\n  fix: {self.hint}"
        return self.message


def _log_dir() -> Path:
    home = Path(os.environ.get("SPACEHOOKS_HOME", "/var/lib/spacehooks"))
    for candidate in (home / "logs" / "crash", Path(tempfile.gettempdir()) / "spacehooks-crash"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    return Path(tempfile.gettempdir())


def report_bug(exc: BaseException) -> Path:
    """Write the traceback to a log file and return its path."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    fd, name = tempfile.mkstemp(prefix=f"{stamp}-", suffix=".log", dir=_log_dir())
    with os.fdopen(fd, "w") as fh:
        fh.write(f"argv: {sys.argv!r}\n")
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=fh)
    return Path(name)


def internal_error_message(exc: BaseException) -> str:
    path = report_bug(exc)
    return (f"internal error ({type(exc).__name__}); this is a bug in spacehooks.\n"
            f"  details: {path}")
