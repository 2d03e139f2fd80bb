"""`--output-format text`: one readable line per record, for a person at a terminal.

    12:00:01 sls demo-group +[0,1] -[] held [0-3] lease 4.2s
    12:00:02 sls demo-group lease 4.5s 1.2ms
    12:00:09 sls demo-group LOST [0-3] lease_expired

Times are local clock times (HH:MM:SS) of the record's `time`; `lease` is what was left of the
lease when the record was written. Colour (green gained, red revoked or lost, yellow errors)
only when asked; `use_colour` says when to ask (a terminal, NO_COLOR unset, TERM not dumb).
Programs should read JSON (the default when stdout is not a terminal): this view may change.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from shardbeat.core.shard_text import shard_text

# C0, DEL, C1 and the bidi controls (they reorder what the terminal shows, disguising a line).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
GREEN, RED, YELLOW, DIM, RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[0m"


def use_colour(is_terminal: bool, environ: Mapping[str, str]) -> bool:
    """https://no-color.org: a NO_COLOR that is set and not empty turns colour off."""
    return is_terminal and not environ.get("NO_COLOR") and environ.get("TERM", "") != "dumb"


def _instant(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _clock(record: Mapping[str, Any], tz: dt.tzinfo | None) -> str:
    at = _instant(record.get("time"))
    return "--:--:--" if at is None else at.astimezone(tz).strftime("%H:%M:%S")


def _lease(record: Mapping[str, Any]) -> str:
    at, expires = _instant(record.get("time")), _instant(record.get("lease_expires"))
    if at is None or expires is None:
        return "lease none"
    return f"lease {max(0.0, (expires - at).total_seconds()):.1f}s"


def _paint(text: str, colour: str, on: bool) -> str:
    return f"{colour}{text}{RESET}" if on else text


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _shards(value: object) -> dict[str, list[int]]:
    return value if isinstance(value, dict) else {}


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: Any) -> Any:
    """Control characters in any string (a server's message, a topic name) are shown escaped:
    they must not break the line or drive the terminal."""
    if isinstance(value, str):
        return _CONTROL.sub(lambda m: _escaped(m.group()), value)
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def text_line(record: Mapping[str, Any], colour: bool = False, tz: dt.tzinfo | None = None) -> str:
    """One line (no newline) for one record; `tz` None means the local zone."""
    record = clean(dict(record))
    event = record.get("event")
    if record.get("source") == "control" and event == "error":
        head = f"{_clock(record, tz)} control"
    else:
        head = f"{_clock(record, tz)} {record.get('provider')} {record.get('group')}"
    if event == "assignment":
        assigned, revoked = _shards(record.get("assigned")), _shards(record.get("revoked"))
        added = _shards(record.get("added"))
        one = len({*assigned, *added, *revoked}) <= 1  # one topic: ids alone say it all
        plus = _paint("+" + shard_text(added, one), GREEN, colour)
        gone = _paint("-" + shard_text(revoked, one), RED, colour and any(revoked.values()))
        held = shard_text(assigned, one)
        return f"{head} {plus} {gone} held {held} {_lease(record)}"
    if event == "lease":
        return _paint(f"{head} {_lease(record)} {record.get('latency_ms', 0):.1f}ms", DIM, colour)
    if event == "lost":
        alarming = record.get("reason") != "stopped"  # a clean stop is no alarm
        lost = _paint(f"LOST {shard_text(_shards(record.get('lost')))}", RED, colour and alarming)
        return f"{head} {lost} {record.get('reason')}"
    if event == "error":
        error = _mapping(record.get("error"))
        text = f"error {error.get('code')}: {error.get('message')}"
        if "retry_in_ms" in record:
            retry = record["retry_in_ms"]
            text += f"; retry in {retry}ms" if retry < 1000 else f"; retry in {retry / 1000:.1f}s"
        return f"{head} {_paint(text, YELLOW, colour)}"
    if event == "status":
        counters = _mapping(record.get("counters"))
        releasing = _shards(record.get("releasing"))
        return (
            f"{head} status held {shard_text(_shards(record.get('assigned')))} "
            f"releasing {shard_text(releasing)} {_lease(record)} errors {counters.get('failures', 0)}"
        )
    if event == "stopped":
        return f"{head} stopped"
    # A record this view does not know yet (a newer event): still shown whole.
    return f"{head} {json.dumps(dict(record), separators=(',', ':'), ensure_ascii=False)}"


def text_encoder(colour: bool, tz: dt.tzinfo | None = None) -> Callable[[dict[str, Any]], bytes]:
    def encode(record: dict[str, Any]) -> bytes:
        return (text_line(record, colour, tz) + "\n").encode("utf-8", "backslashreplace")

    return encode
