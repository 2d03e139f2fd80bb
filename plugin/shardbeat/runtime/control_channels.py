"""The control channels: stdin (when it is something that can be read safely) and the Unix socket.

`start_control(sink, config)` starts whichever the config asks for and returns a handle whose
`close()` stops them. Each channel runs on daemon threads of its own and only calls the sink, so a
silent, slow or hostile control client can never delay a heartbeat.

stdin is read only when it is a pipe, FIFO, regular file or socket. A terminal is never read: a
background process group reading its terminal is stopped by SIGTTIN (Fluent Bit starts the plugin
in its own process group with Fluent Bit's stdin). Character devices such as /dev/null (Vector's
and often Fluent Bit's stdin) are not read either, so they never report an end of file.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shardbeat.config import ControlConfig
from shardbeat.runtime.control import ControlDecoder, ControlMessage, ControlProblem, ControlSink, Reply
from shardbeat.runtime.control_socket import ControlSocketError, ControlSocketServer

__all__ = [
    "ControlChannels",
    "ControlSocketError",
    "Feed",
    "ProblemBudget",
    "start_control",
    "start_stdin_reader",
    "stdin_kind",
]

log = logging.getLogger("shardbeat.control")

READ_SIZE = 64 * 1024
REPORT_BURST = 10  # problems reported at once per source...
REPORT_EVERY = 1.0  # ...then one per second; the others are counted into the next report


class ProblemBudget:
    """How many problems a source may report now: REPORT_BURST at once, then one per REPORT_EVERY.
    One per source, shared by all its streams: a client that reconnects for every bad message
    must not get a fresh burst each time. Thread-safe (stdin and socket threads)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens = float(REPORT_BURST)
        self._last = clock()
        self._lock = threading.Lock()
        self.suppressed = 0  # problems not reported since the last report

    def take(self) -> int | None:
        """None: do not report this one (it is counted); else how many were not reported before it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(REPORT_BURST), self._tokens + (now - self._last) / REPORT_EVERY)
            self._last = now
            if self._tokens < 1:
                self.suppressed += 1
                return None
            self._tokens -= 1
            skipped, self.suppressed = self.suppressed, 0
            return skipped


class Feed:
    """One stream's decoder wired to the sink: delivers messages, reports problems (rate limited
    per source: a flood of garbage must not flood the record stream or the log), and never lets an
    exception from the sink escape into the reader."""

    def __init__(
        self,
        sink: ControlSink,
        source: str,
        clock: Callable[[], float] = time.monotonic,
        budget: ProblemBudget | None = None,
    ) -> None:
        self.sink = sink
        self.source = source
        self.decoder = ControlDecoder()
        self.budget = budget or ProblemBudget(clock)
        self.closed = False
        self.reply: Reply | None = None  # answers this stream's client (set by the socket server)

    def data(self, chunk: bytes) -> None:
        self._deliver(self.decoder.feed(chunk))

    def end(self) -> None:
        self._deliver(self.decoder.finish())

    def _deliver(self, items: list[ControlMessage | ControlProblem]) -> None:
        for item in items:
            if self.closed:
                return
            try:
                if isinstance(item, ControlMessage):
                    log.debug("control (%s): %s", self.source, item.op)
                    if self.reply is None:
                        self.sink.control(item)
                    else:
                        self.sink.control(item, reply=self.reply)
                else:
                    if self.reply is not None:  # the client hears of every problem it caused
                        self.reply({"ok": False, "error": {"code": item.code, "message": item.message}})
                    self._problem(item)
            except Exception:  # a bug behind the sink must not end the channel
                log.exception("internal error handling a control message from %s", self.source)

    def _problem(self, problem: ControlProblem) -> None:
        skipped = self.budget.take()
        if skipped is None:
            return
        message = problem.message
        if skipped:
            message += f" ({skipped} more bad control messages from {self.source} not reported)"
        # The sink writes the error record and the warning line; this is for debugging the reader.
        log.debug("bad control message from %s: %s: %s", self.source, problem.code, message)
        self.sink.control_error(self.source, problem.code, message)


# -- stdin -------------------------------------------------------------------------------------------


def stdin_kind(fd: int = 0) -> tuple[bool, str]:
    """(may it be read, what it is) for the descriptor; never raises."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False, "closed"
    if stat.S_ISFIFO(mode):
        return True, "a pipe"
    if stat.S_ISREG(mode):
        return True, "a file"
    if stat.S_ISSOCK(mode):
        return True, "a socket"
    if os.isatty(fd):
        return False, "a terminal"
    if stat.S_ISCHR(mode):
        return False, "a character device"
    return False, "neither a pipe, file nor socket"


@dataclass(eq=False)
class StdinReader:
    feed: Feed
    fd: int
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="shardbeat-control-stdin", daemon=True)

    def _run(self) -> None:
        while not self.feed.closed:
            try:
                chunk = os.read(self.fd, READ_SIZE)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:  # a non-blocking descriptor inherited from the host
                    time.sleep(0.1)
                    continue
                log.warning("stopped reading control messages from stdin: %s", exc.strerror or exc)
                chunk = b""
            if not chunk:
                self.feed.end()
                if not self.feed.closed:
                    log.info("stdin reached end of file")
                    try:
                        self.feed.sink.control_eof()
                    except Exception:
                        log.exception("internal error handling the end of stdin")
                return
            self.feed.data(chunk)

    def close(self) -> None:
        # A blocking read cannot be interrupted portably; the thread is a daemon and delivers
        # nothing more once closed.
        self.feed.closed = True


def start_stdin_reader(sink: ControlSink, config: ControlConfig, fd: int = 0) -> StdinReader | None:
    """Read control messages from stdin on a daemon thread, if config and the descriptor allow it."""
    if config.stdin == "off":
        log.debug("control on stdin is off")
        return None
    readable, what = stdin_kind(fd)
    if not readable:
        level = logging.INFO if config.exit_on_stdin_eof else logging.DEBUG
        note = "; exit_on_stdin_eof has no effect" if config.exit_on_stdin_eof else ""
        log.log(level, "stdin is %s: not reading control messages from it%s", what, note)
        return None
    log.debug("reading control messages from stdin (%s)", what)
    reader = StdinReader(Feed(sink, "stdin"), fd)
    reader.thread.start()
    return reader


# -- both -------------------------------------------------------------------------------------------


@dataclass(eq=False)
class ControlChannels:
    stdin: StdinReader | None = None
    socket: ControlSocketServer | None = None

    def close(self) -> None:
        """Idempotent. Call it without holding a lock the sink takes (the socket thread is joined)."""
        if self.stdin is not None:
            self.stdin.close()
        if self.socket is not None:
            self.socket.close()


def start_control(sink: ControlSink, config: ControlConfig, stdin_fd: int = 0) -> ControlChannels:
    """Start the channels `config` asks for. Raises ControlSocketError (a clear, one-line message)
    when the socket cannot be served, e.g. another live process listens on its path."""
    budget = ProblemBudget()  # every connection of the socket reports from one budget
    server = (
        ControlSocketServer(config.socket, lambda: Feed(sink, "socket", budget=budget))
        if config.socket
        else None
    )
    if server is not None:
        server.start()
    return ControlChannels(start_stdin_reader(sink, config, stdin_fd), server)
