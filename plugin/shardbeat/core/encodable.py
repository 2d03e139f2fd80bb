"""Make any record encodable as JSON and as MessagePack, whatever its values hold.

Records are built from our own state and from what servers and control clients send; a value neither
encoder can take (a lone surrogate from an escaped `\\udc80` in a server message, an integer past
MessagePack's 64 bits, a NaN, a nested structure too deep, a type the encoders do not know) must not
cost the record stream. The writer encodes as is first (the fast path); only when that fails does it
ask `repaired` for a copy with every value made safe, generically, whatever field it sits in:

- strings: lone surrogates become their `\\udXXX` escape text;
- integers outside [-2**63, 2**64) become decimal strings; NaN and infinities become strings;
- bytes are decoded (escaping what is not UTF-8); other objects become their str();
- mapping keys become strings; nesting deeper than MAX_DEPTH is cut off with a marker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 32
INT_MIN = -(2**63)
INT_LIMIT = 2**64  # exclusive: msgpack's uint64 ceiling
TOO_DEEP = "[nested too deeply]"


def safe_text(text: str) -> str:
    """`text` with lone surrogates (unencodable as UTF-8) written as escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def repaired(value: Any, depth: int = 0) -> Any:
    """A copy of `value` that JSON (strict, no NaN) and MessagePack can both encode."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, int):
        return value if INT_MIN <= value < INT_LIMIT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, Mapping):
        return {_key(k): repaired(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [repaired(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    return safe_text(_describe(value))


def _key(key: Any) -> str:
    return safe_text(key if isinstance(key, str) else _describe(key))


def _describe(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a hostile __str__ must not take the writer with it
        return f"<unprintable {type(value).__name__}>"
