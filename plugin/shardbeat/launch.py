"""The process's entry (`shardbeat` and `python -m shardbeat`): for `run`, the start-up's signal
handling and the parent's pid are in place before the rest of the program is imported.

Importing the CLI and the runtime takes 0.1 s, and seconds on a loaded machine; until now a signal in
that window got its default action: SIGHUP (a reload) killed the plugin silently, and a Fluent Bit
oneshot child that exits is never restarted; SIGTERM killed it "by signal"; SIGINT printed a
KeyboardInterrupt traceback. And a host killed then was never noticed (runtime/parent.py). This
module imports nothing heavy, so that window shrinks to the interpreter's own start.
"""

from __future__ import annotations

import contextlib
import faulthandler
import itertools
import os
import sys

from shardbeat.runtime import lifecycle_signals
from shardbeat.runtime.parent import remember_parent


def main() -> int:
    run = sys.argv[1:2] == ["run"]
    if run:
        with contextlib.suppress(RuntimeError, ValueError, OSError):  # no usable stderr: nowhere to say it
            faulthandler.enable()  # a crash in C code (a library, the interpreter) still says where
        lifecycle_signals.install()
        remember_parent()
    try:
        from shardbeat.cli import main as cli_main

        code = cli_main()
    except lifecycle_signals.StartupInterrupted as exc:  # before the CLI could say it: nothing claimed
        _say_stopped(exc.signal_name)
        code = 0
    if run:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """`run` ends here, its records written and its logs flushed by then: the interpreter's teardown,
    with the plugin's daemon threads (control socket, writer, connectors, resolvers) still there, is
    skipped. Under load it could crash (SIGSEGV after a clean stop, seen in CI), and a host reads that
    exit as a failure of the plugin."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # closed by the host: nothing left to lose
            if stream is not None:
                stream.flush()
    os._exit(code)


def _say_stopped(signal_name: str) -> None:
    """The line the CLI logs for a stop while starting, in the format asked for (JSON lines on stderr
    are what a Vector host with include_stderr decodes)."""
    said = f"stopped by {signal_name} while starting; nothing was claimed"
    if sys.stderr is None:  # fd 2 was closed: never fall back to stdout
        return
    args = sys.argv[1:]
    json_logs = "--log-format=json" in args or ("--log-format", "json") in itertools.pairwise(args)
    try:
        import logging

        from shardbeat.runtime.logs import setup_logging

        setup_logging("info", "json" if json_logs else "text")
        logging.getLogger("shardbeat.cli").info("%s", said)
    except BaseException:  # a second signal, or the logging modules themselves unusable
        print(f"shardbeat: {said}", file=sys.stderr)
