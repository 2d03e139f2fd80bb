"""Reading config files: JSON, or TOML when the name ends in `.toml`; every failure becomes a Problem.

Parser messages carry a line and column but never the text around them, so a secret on a broken
line stays out of the error.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from shardbeat.config.model import ConfigError, Problem

MAX_CONFIG_BYTES = 1 << 20  # a config is a few KiB; anything near this is the wrong file
# A config nests 4 deep (groups[i].credentials.key). The parsers accept ~1000 levels, but what walks
# the document afterwards (expand, the checks) recurses with two frames a level: past ~490 it hit
# Python's recursion limit, an internal error. Refused here, for every walk after.
MAX_NESTING = 64


_TOO_LONG = "{what} holds an integer with too many digits to read"


class _NonStandardNumber(ValueError):
    pass


def read_text(path: str | os.PathLike[str], what: str, limit: int = MAX_CONFIG_BYTES) -> str:
    """The file's UTF-8 text; raises ConfigError naming the file and the reason (never its content)."""
    name = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; anything but a regular file is
        # refused before a read could block on it (a FIFO, a terminal, /dev/zero) or never end.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except ValueError:  # a NUL in the name (from a config string): no such file can exist
        raise ConfigError(
            [Problem(name.replace("\0", "\\0"), f"cannot read {what}: the name holds a NUL")]
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([Problem(name, f"cannot read {what}: {reason}")]) from None
    try:
        kind = _file_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise ConfigError([Problem(name, f"{what} must be a regular file, not {kind}")])
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([Problem(name, f"cannot read {what}: {reason}")]) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError([Problem(name, f"{what} is larger than {limit // 1024} KiB")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(name, f"{what} is not UTF-8 text (byte {exc.start})")]) from None


def _file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is instead."""
    if stat.S_ISREG(mode):
        return None
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "a special file")


def parse_json(text: str, name: str, what: str) -> Any:
    """Strict JSON: no NaN/Infinity, and a key repeated in one object is an error (not last-wins)."""
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                repeated.append(key)
            out[key] = value
        return out

    def constant(token: str) -> Any:
        raise _NonStandardNumber(token)

    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [Problem(name, f"line {exc.lineno}, column {exc.colno}: invalid JSON in {what}: {exc.msg}")]
        ) from None
    except _NonStandardNumber as exc:
        raise ConfigError([Problem(name, f"{exc} is not a JSON number (in {what})")]) from None
    except RecursionError:
        raise ConfigError([Problem(name, f"{what} is nested too deeply")]) from None
    except ValueError:  # an integer past int()'s digit limit (4300): json raises no JSONDecodeError
        raise ConfigError([Problem(name, _TOO_LONG.format(what=what))]) from None
    if _too_deep(value):
        raise ConfigError([Problem(name, f"{what} is nested too deeply")])
    if repeated:
        raise ConfigError(
            # The key after " (": problem_summary takes what comes before as the kind, so 30,000
            # repeated keys are one kind said in a few lines, not 30,000 kinds of one line each.
            [Problem(name, f"a key appears twice in one object ({key!r}, in {what})") for key in repeated]
        )
    return value


def parse_toml(text: str, name: str, what: str) -> Any:
    import tomllib  # lazy: most configs are JSON

    try:
        value = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message already ends with "(at line L, column C)".
        raise ConfigError([Problem(name, f"invalid TOML in {what}: {exc}")]) from None
    except RecursionError:
        raise ConfigError([Problem(name, f"{what} is nested too deeply")]) from None
    except ValueError:  # an integer past int()'s digit limit: tomllib lets int()'s error through
        raise ConfigError([Problem(name, _TOO_LONG.format(what=what))]) from None
    if _too_deep(value):
        raise ConfigError([Problem(name, f"{what} is nested too deeply")])
    return value


def _too_deep(document: Any) -> bool:
    """Objects and lists nested past MAX_NESTING, found without recursion (only containers are visited)."""
    if type(document) is not dict and type(document) is not list:
        return False
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if type(value) is dict else value
        for child in children:
            if type(child) is dict or type(child) is list:
                if depth >= MAX_NESTING:
                    return True
                stack.append((child, depth + 1))
    return False


def parse_config_file(path: str | os.PathLike[str]) -> Any:
    """The raw document in a config file (not yet validated)."""
    name = os.fspath(path)
    text = read_text(name, "config file")
    if Path(name).suffix.lower() == ".toml":
        return parse_toml(text, name, "config file")
    return parse_json(text, name, "config file")
