"""stdout of the one-shot verbs (validate, doctor, status, stop, schema, emulator --print-config).

A full disk or a vanished reader behind stdout is the operator's environment, not a bug: it gets one
clear line and exit 1 instead of an internal-error traceback. `run` never uses this (its records go
through runtime/output.py, which has its own rule: stop claiming, then exit 1).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, TextIO


class StdoutUnwritable(Exception):
    """Writing the verb's answer to stdout failed."""


class GuardedStdout:
    """Delegates to the real stdout; a failed write or flush raises StdoutUnwritable."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise self._fail(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise self._fail(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _fail(self, exc: OSError) -> StdoutUnwritable:
        # Unflushed text would fail again at interpreter exit ("Exception ignored ..."): point fd 1 at
        # /dev/null so that last flush is silent; the error is reported once, by the caller.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        return StdoutUnwritable(f"cannot write to stdout: {exc.strerror or exc}")
