"""The process's entry (`shardbeat` and `python -m shardbeat`): for `run`, the start-up's signal
handling and the parent's pid are in place before the rest of the program is imported.

Importing the CLI and the runtime takes 0.1 s, and seconds on a loaded machine; until now a signal in
that window got its default action: SIGHUP (a reload) killed the plugin silently, and a Fluent Bit
oneshot child that exits is never restarted; SIGTERM killed it "by signal"; SIGINT printed a
KeyboardInterrupt traceback. And a host killed then was never noticed (runtime/parent.py). This
module imports nothing heavy, so that window shrinks to the interpreter's own start.
"""

from __future__ import annotations

import sys

from shardbeat.runtime import lifecycle_signals
from shardbeat.runtime.parent import remember_parent


def main() -> int:
    if sys.argv[1:2] == ["run"]:
        lifecycle_signals.install()
        remember_parent()
    try:
        from shardbeat.cli import main as cli_main

        return cli_main()
    except lifecycle_signals.StartupInterrupted as exc:  # before the CLI could say it: nothing claimed
        if sys.stderr is not None:  # None when fd 2 was closed: never fall back to stdout
            said = f"shardbeat: stopped by {exc.signal_name} while starting; nothing was claimed"
            print(said, file=sys.stderr)
        return 0
