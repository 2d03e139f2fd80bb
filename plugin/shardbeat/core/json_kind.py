"""What kind of JSON value something is, in words, for error messages ("must be an object, not an array").

One wording everywhere: config, control messages, server answers and emulator fixtures all report a
wrong type the same way. Values are never echoed (they may be secrets); only their kind is.
"""

from __future__ import annotations

from collections.abc import Mapping

_NAMES: dict[type, str] = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    tuple: "an array",
    dict: "an object",
    bytes: "binary data",
    bytearray: "binary data",
}


def json_kind(value: object) -> str:
    name = _NAMES.get(type(value))
    if name is not None:
        return name
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"  # e.g. a TOML date or time
