"""argparse, with usage errors that never repeat a value from the command line.

argparse quotes what it could not place: `unrecognized arguments: --acess-key-secret S3CR3T` (a typo
in a flag, a secret flag given to a verb that takes none, a stray word) and `ambiguous option:
--secret=S3CR3T could match ...`. Those values are often secrets, and stderr is the host's log
(Fluent Bit and Vector keep what their plugins write there): the flags are named, values never.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn


def unrecognized(extras: Sequence[str]) -> str:
    """The usage error for arguments no flag took: the flags named (without any `=value`), the rest
    only counted."""
    flags = [arg.partition("=")[0] for arg in extras if arg.startswith("-") and len(arg) > 1]
    values = len(extras) - len(flags) + sum("=" in arg for arg in extras if arg.startswith("-"))
    said = [f"unrecognized arguments: {' '.join(flags)}"] if flags else ["unrecognized arguments:"]
    if values:
        said.append(
            f"{'and ' if flags else ''}{values} value(s), not repeated here (a value may be a secret)"
        )
    return " ".join(said)


class ArgumentParser(argparse.ArgumentParser):
    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(unrecognized(extras))
        return parsed

    def error(self, message: str) -> NoReturn:
        if message.startswith("ambiguous option: ") and " could match " in message:
            option, _, matches = message.removeprefix("ambiguous option: ").rpartition(" could match ")
            shown = option.partition("=")[0] + ("=..." if "=" in option else "")
            message = f"ambiguous option: {shown} could match {matches}"
        super().error(message)
