"""`shardbeat status`: the control socket's status reply as a table, one row per group.

    PROVIDER  GROUP       CONSUMER  HELD     RELEASING  LEASE  LATENCY  ERRORS  LAST ERROR
    sls       demo-group  node-1    2 [0,1]  0          4.2s   1.3ms    0       -

HELD: how many shards and which; LEASE: time left before this node must stop acting on them
(`none`: it holds no lease); LATENCY: the last answered heartbeat; ERRORS: failed calls so far;
LAST ERROR: the last failure, how long ago, and `(failing)` while it lasts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shardbeat.core.shard_text import count, shard_text
from shardbeat.views.text_records import clean

COLUMNS = ("PROVIDER", "GROUP", "CONSUMER", "HELD", "RELEASING", "LEASE", "LATENCY", "ERRORS", "LAST ERROR")
MAX_HELD = 40
MAX_ERROR = 70


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f}s"
    if value < 3600:
        return f"{value / 60:.0f}m"
    return f"{value / 3600:.0f}h"


def _held(entry: Mapping[str, Any]) -> str:
    assigned = entry.get("assigned") or {}
    n = count(assigned)
    return _cut(f"{n} {shard_text(assigned)}", MAX_HELD) if n else "0"


def _last_error(entry: Mapping[str, Any]) -> str:
    failure = entry.get("last_failure")
    if not failure:
        return "-"
    text = f"{failure['code']} {_seconds(float(failure['age_s']))} ago: {failure['message']}"
    if entry.get("failing"):
        text = "(failing) " + text
    return _cut(" ".join(text.split()), MAX_ERROR)


def row(entry: Mapping[str, Any]) -> tuple[str, ...]:
    lease_ms = entry.get("lease_remaining_ms")
    latency = entry.get("last_latency_ms")
    counters = entry.get("counters") or {}
    return (
        str(entry.get("provider", "?")),
        str(entry.get("group", "?")),
        str(entry.get("consumer", "?")),
        _held(entry),
        str(count(entry.get("releasing") or {})),
        "none" if lease_ms is None else _seconds(lease_ms / 1000),
        "-" if latency is None else f"{latency:.1f}ms",
        str(counters.get("failures", 0)),
        _last_error(entry),
    )


def render(groups: Sequence[Mapping[str, Any]]) -> str:
    """The table, aligned, ending in a newline; the last column is never padded."""
    rows = [COLUMNS, *(row(clean(dict(g))) for g in groups)]  # server strings cannot drive the terminal
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for r in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(r[:-1])] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    if not groups:
        lines.append("(no groups)")
    return "\n".join(lines) + "\n"
