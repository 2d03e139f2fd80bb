"""Logging to stderr, one line per record: plain text, or compact JSON for hosts that parse stderr.

stdout belongs to records; stderr is where Fluent Bit puts our lines in its own log and where Vector
(with include_stderr) decodes each line with the same codec as stdout. So every record is exactly
one line: newlines and other control characters in a message or traceback are escaped, JSON is
ASCII-only (valid whatever stderr's encoding), and a message that cannot be formatted or written is
shown as best it can be or dropped, never raised.

    text: 2026-11-23T17:10:00.123Z WARNING shardbeat.x: message
    json: {"time":"2026-11-23T17:10:00.123Z","level":"WARNING","logger":"shardbeat.x","message":"message"}

Attributes passed with `extra=` appear as more keys in JSON (and as `key=value` after a text line).
"""

from __future__ import annotations

import json
import logging
import queue
import re
import sys
import threading
import time
from typing import Any, Literal

from shardbeat.core.records import rfc3339
from shardbeat.core.redaction import redact

LogFormat = Literal["text", "json"]
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# C0, DEL, C1 (\x9b is an 8-bit CSI) and the bidi controls that reorder what a terminal shows: a
# control client's group name or a server's message must not drive the terminal or disguise a line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# http.client quotes a header it refuses ("Invalid header value b'...'"); the value may be a token.
_QUOTED_HEADER = re.compile(r"(Invalid header (?:value|name)) (?:b?'(?:[^'\\]|\\.)*'|b?\"(?:[^\"\\]|\\.)*\")")


def _one_line(text: str) -> str:
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group(), _escaped(m.group())), text)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _redacted(line: str) -> str:
    """The one redaction point for logs: every line, traceback included, has secrets and the values
    that exception messages quote from headers masked (see core.redaction)."""
    return _QUOTED_HEADER.sub(r"\1 [redacted]", redact(line))


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception as exc:  # a bad %-format must not lose the line or raise in the caller
        return f"{record.msg!s} [unformattable arguments: {type(exc).__name__}]"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return value


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{rfc3339(record.created)} {record.levelname} {record.name}: {_message(record)}"
        for key, value in _extras(record).items():
            line += f" {key}={value!s}"
        if record.exc_info:
            line += " | " + self.formatException(record.exc_info)
        return _one_line(_redacted(line))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, _jsonable(value))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _redacted(json.dumps(entry, separators=(",", ":"), ensure_ascii=True, default=repr))


class StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time (tests swap it), and never raises.

    In the plugin process it writes from a thread of its own (`write_in_background`): a host that stops
    reading stderr (Vector under backpressure) then blocks only that thread, never a heartbeat worker or
    the lease watchdog; lines beyond a bounded backlog are dropped and counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self._backlog: queue.Queue[str] | None = None
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            line = _one_line(f"{record.levelname} {record.name}: [log record could not be formatted]")
        backlog = self._backlog
        if backlog is None:
            _write_line(line)
            return
        try:
            backlog.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def handleError(self, record: logging.LogRecord) -> None:
        pass

    def write_in_background(self, capacity: int = 1024) -> None:
        if self._backlog is not None:
            return
        backlog: queue.Queue[str] = queue.Queue(capacity)
        self._backlog = backlog

        def drain() -> None:
            while True:
                line = backlog.get()
                if self.dropped:
                    lost, self.dropped = self.dropped, 0
                    _write_line(
                        _one_line(f"WARNING shardbeat.logs: stderr was not read: {lost} log lines dropped")
                    )
                _write_line(line)
                backlog.task_done()

        threading.Thread(target=drain, name="shardbeat-stderr", daemon=True).start()

    def flush_backlog(self, timeout: float) -> None:
        """Give queued lines up to `timeout` seconds to reach stderr (at exit)."""
        backlog = self._backlog
        deadline = time.monotonic() + timeout
        while backlog is not None and backlog.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)


def _write_line(line: str) -> None:
    stream = sys.stderr
    if stream is None:
        return
    try:
        try:
            stream.write(line + "\n")
        except UnicodeError:  # e.g. a lone surrogate from a file name, on a strict stream
            encoding = getattr(stream, "encoding", None) or "ascii"
            stream.write(line.encode(encoding, "backslashreplace").decode(encoding) + "\n")
        stream.flush()
    except Exception:
        pass  # stderr gone (host exited): nothing useful left to do with a log line


def stderr_handler() -> StderrHandler | None:
    return next((h for h in logging.getLogger().handlers if isinstance(h, StderrHandler)), None)


def _library_without_traceback(record: logging.LogRecord) -> bool:
    """A library's record keeps its words but not its traceback: a peer's garbage is not our crash
    (our own `log.exception`, an internal error, keeps its traceback)."""
    if record.exc_info and not record.name.startswith("shardbeat"):
        exc = record.exc_info[1]
        if exc is not None:
            record.msg = f"{record.getMessage()} ({type(exc).__name__})"
            record.args = None
        record.exc_info = None
        record.exc_text = None
    return True


def setup_logging(level: str = "info", fmt: LogFormat = "text") -> logging.Handler:
    """Route all logging (and warnings.warn) to stderr in `fmt`. Idempotent: replaces its own handler."""
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}; expected text or json")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(old)
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_library_without_traceback)
    root.addHandler(handler)
    root.setLevel(LEVELS[level.lower()])
    # urllib3 warns (with a traceback) about what a hostile peer sends, e.g. headers it cannot parse;
    # the call's own error already says what failed, in our words, once per call.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception
    sys.unraisablehook = _log_unraisable
    return handler


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """A thread's uncaught exception goes through the logger, not Python's default hook: that one
    prints a raw multi-line traceback to stderr, past the redaction point and the one-line format."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    value = args.exc_value if args.exc_value is not None else args.exc_type()
    logging.getLogger("shardbeat.threads").critical(
        "internal error in thread %s (please report it)",
        name,
        exc_info=(args.exc_type, value, args.exc_traceback),
    )


def _log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """An exception Python cannot raise (in a __del__, a finalised generator, a GC callback) goes
    through the logger too: the default hook prints it raw over many lines, past the redaction point."""
    exc_type = unraisable.exc_type
    value = unraisable.exc_value if unraisable.exc_value is not None else exc_type()
    where = unraisable.err_msg or "Exception ignored in"
    thing = unraisable.object  # named, never repr()'d: a repr may quote values
    name = getattr(thing, "__qualname__", None) or type(thing).__name__
    logging.getLogger("shardbeat.threads").error(
        "%s: %s (please report it)",
        where,
        name if isinstance(name, str) else "?",
        exc_info=(exc_type, value, unraisable.exc_traceback),
    )
