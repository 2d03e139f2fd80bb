"""`${VAR}` in any string value expands from the environment; `$${` stands for a literal `${`.

Runs before schema validation, so every later rule sees the values that will be used. Problems name
the variable and the JSON path, never a value (the value may well be a secret).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shardbeat.config.model import Problem

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def json_path(parts: tuple[str | int, ...]) -> str:
    """("groups", 0, "timeout") -> groups[0].timeout; odd keys are quoted: groups[0]["a b"]."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _NAME.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{_quote(part)}]"
    return out


def _quote(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def expand_string(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """-> (expanded text, problems). A problem leaves the reference as written."""
    problems: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, closed = match.group(1), match.group(2)
        if not closed:
            problems.append("unterminated ${ (write $${ for a literal ${)")
        elif not _NAME.fullmatch(name):
            problems.append("invalid variable reference ${...}: use ${NAME} with letters, digits and _")
        elif name not in environ:
            problems.append(f"environment variable {name} is not set")
        else:
            return environ[name]
        return match.group(0)

    return _REFERENCE.sub(substitute, text), problems


CONTROL_MESSAGE = "must not contain control characters (newline, tab, ...)"


def has_control(text: str) -> bool:
    """A newline, tab, ... : refused in every config string (the schema's `$` lets a final newline by)."""
    return _CONTROL.search(text) is not None


SURROGATE_MESSAGE = (
    "must be Unicode text: holds a lone surrogate (such as \\ud800), which no file name, URL or header "
    "can carry"
)


def encodable(text: str) -> bool:
    """UTF-8 can carry it: JSON's "\\ud800" gives a str no path, URL or header encodes (os.fsencode
    raised deep in the checks); the environment's undecodable bytes (surrogateescape) still pass."""
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def expand(document: Any, environ: Mapping[str, str]) -> tuple[Any, list[Problem], set[str]]:
    """Expand every string in `document`; also refuse control characters (newlines, tabs) in strings.

    -> (expanded copy, problems, paths that had a problem: later rules skip those, so one mistake
    gives one message).
    """
    problems: list[Problem] = []
    bad_paths: set[str] = set()

    def walk(value: Any, parts: tuple[str | int, ...]) -> Any:
        if isinstance(value, dict):
            return {key: walk(item, (*parts, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, (*parts, i)) for i, item in enumerate(value)]
        if not isinstance(value, str):
            return value
        path = json_path(parts)
        expanded, messages = expand_string(value, environ)
        if not messages and has_control(expanded):
            messages = [CONTROL_MESSAGE]
        if not messages and not encodable(expanded):
            messages = [SURROGATE_MESSAGE]
        for message in messages:
            problems.append(Problem(path, message))
        if messages:
            bad_paths.add(path)
        return expanded

    return walk(document, ()), problems, bad_paths
