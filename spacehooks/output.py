"""Push output in one grammar (Dokku/Heroku style), built only here.

    -----> Step
           detail
     !     problem
"""
from __future__ import annotations

import io
import sys

STEP = "-----> "
DETAIL = "       "
ALERT = " !     "


class Out:
    def __init__(self, stream: io.TextIOBase | None = None):  # (no typing.TextIO: every push imports this)
        self.stream = stream or sys.stdout

    def _write(self, prefix: str, message: str) -> None:
        for line in str(message).splitlines() or [""]:
            self.stream.write(prefix + line + "\n")
        self.stream.flush()

    def step(self, message: str) -> None:
        self._write(STEP, message)

    def detail(self, message: str) -> None:
        self._write(DETAIL, message)

    def alert(self, message: str) -> None:
        self._write(ALERT, message)

    def warn(self, message: str) -> None:
        self._write(ALERT, f"warning: {message}")
