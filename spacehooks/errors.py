"""The one error type shown to users, and the top-level handler for everything else."""
from __future__ import annotations

import os
import sys
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


def _log_dirs() -> list[Path]:
    import tempfile  # here and below, not at the top: every push imports this module, few crash
    home = Path(os.environ.get("SPACEHOOKS_HOME", "/var/lib/spacehooks"))
    return [home / "logs" / "crash", Path(tempfile.gettempdir()) / "spacehooks-crash"]


def report_bug(exc: BaseException) -> Path:
    """Write the traceback to a log file and return its path. Never raises: on a full disk (the
    very fault being reported, often) the next folder is tried, and last stderr."""
    import datetime
    import tempfile
    import traceback
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = f"argv: {sys.argv!r}\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for folder in _log_dirs():
        name = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"{stamp}-", suffix=".log", dir=folder)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            return Path(name)
        except OSError:
            if name:
                Path(name).unlink(missing_ok=True)
    sys.stderr.write(text)
    return Path("(standard error: no room for a crash log)")


def internal_error_message(exc: BaseException) -> str:
    path = report_bug(exc)
    return (f"internal error ({type(exc).__name__}); this is a bug in spacehooks.\n"
            f"  details: {path}")
