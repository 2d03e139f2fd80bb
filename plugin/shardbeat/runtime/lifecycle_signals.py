"""Signals outside the runner's life: while `run` is starting, before the runner's own handlers are
in place, and once the stop is done, while the process tears down.

Reading and validating a big config, taking its instance locks and building its groups takes
seconds (3000 groups: about 3 s). Until now a signal in that window got the default action: SIGHUP
(a reload, e.g. after rotating a credentials file) killed the process, silently, and under Fluent Bit
a oneshot child that exits is never restarted; SIGTERM killed it without a word and not with the
exit status a stop has. So `install` is called first thing in `run` (by shardbeat.launch, the
process's entry, before the ~0.1-0.5 s of imports; again, harmlessly, by the CLI's `run`):
- SIGHUP is remembered and handed to the reload machinery once it exists (`reload_asked`): a file
  edited while the old contents were being read is re-read then;
- SIGTERM and SIGINT end the start at once by raising StartupInterrupted in the main thread (the way
  Python's own SIGINT raises KeyboardInterrupt): nothing has been claimed yet (no heartbeat is sent
  before the runner's loop), so the CLI says so and exits 0 like any stop.
process.run replaces these handlers with the runner's before the loop starts, and calls
`ignore_after_stop` once the loop has returned: Python puts the default action back on every
signal it handled when the interpreter finalizes, so a SIGHUP or a second SIGTERM in those last
milliseconds killed a process that had stopped cleanly, and it exited "killed by SIGHUP" (-1)
instead of 0. Ignored signals stay ignored through finalization; the stop they would ask for is done.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_reload = [False]  # a SIGHUP came: a plain flag, since a handler must take no lock (see _remember_reload)
_replaced: dict[int, object] = {}  # the handlers `install` replaced, for `leave`


class StartupInterrupted(BaseException):
    """A stop signal came while starting. BaseException, like KeyboardInterrupt: no `except
    Exception` on the way (config errors, lock errors) may swallow it."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"{self.signal_name} while starting")


def install() -> None:
    """Take SIGTERM, SIGINT and SIGHUP for the start (main thread only: elsewhere Python refuses)."""
    if threading.current_thread() is not threading.main_thread() or _replaced:
        return  # installed already (by shardbeat.launch, before the imports): keep what came since
    # A signal mask is inherited across exec: a host that forks from a thread blocking these would
    # hand us a SIGTERM that is never delivered (and a host that waits for its child without limit,
    # as Fluent Bit does, would hang). Threads started from here on inherit the unblocked mask.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (*STOP_SIGNALS, signal.SIGHUP))
    _reload[0] = False
    for sig in STOP_SIGNALS:
        _replaced[sig] = signal.signal(sig, _interrupt)
    _replaced[signal.SIGHUP] = signal.signal(signal.SIGHUP, _remember_reload)


def leave() -> None:
    """`run` returns without having run (a config error, a refused lock; a test's stand-in runner):
    put back the handlers `install` replaced. After `ignore_after_stop` there is nothing to undo."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, handler in _replaced.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]
    _replaced.clear()


def ignore_after_stop() -> None:
    """The stop is done (records written, exit status known): later signals change nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    _replaced.clear()
    for sig in (*STOP_SIGNALS, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def reload_asked() -> bool:
    """Whether a SIGHUP came since `install` (and forget it: it is handed over once)."""
    asked, _reload[0] = _reload[0], False
    return asked


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise StartupInterrupted(signum)


def _remember_reload(signum: int, frame: FrameType | None) -> None:
    # No lock (threading.Event.set takes one): the next SIGHUP may interrupt this very handler.
    _reload[0] = True


__all__ = ["StartupInterrupted", "ignore_after_stop", "install", "leave", "reload_asked"]
