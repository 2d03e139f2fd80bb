"""The human views, by golden output: the status table and the text view of records."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

from shardbeat.core.shard_text import ranges, shard_text
from shardbeat.runtime.output import encoder_for
from shardbeat.views import status_table
from shardbeat.views.text_records import text_line, use_colour

GOLDEN = Path(__file__).parent / "golden"
UTC = dt.UTC


def golden(name: str, text: str) -> None:
    """Compare with tests/golden/NAME; SHARDBEAT_GOLDEN=update rewrites it (then review the diff)."""
    path = GOLDEN / name
    if os.environ.get("SHARDBEAT_GOLDEN") == "update":
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file"


def entry(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "time": "2026-11-23T12:00:01.000Z",
        "provider": "sls",
        "group": "demo-group",
        "consumer": "node-1",
        "epoch": 3,
        "assigned": {"demo-logstore": [0, 1, 2, 3]},
        "releasing": {},
        "lease_expires": "2026-11-23T12:00:05.200Z",
        "lease_remaining_ms": 4200,
        "last_error": None,
        "counters": {"beats": 40, "failures": 0, "changes": 2, "lost": 0, "output_dropped": 0},
        "clock_offset_s": 0.0,
        "latency_ms": {"count": 40, "p50": 1.1, "p99": 2.5},
        "scope": "demo-project/demo-logstore",
        "failing": False,
        "last_failure": None,
        "last_latency_ms": 1.27,
    }
    doc.update(over)
    return doc


STATUS_GROUPS = [
    entry(),
    entry(
        provider="cls",
        consumer="node-2",
        assigned={"topic-a": [0, 1], "topic-b": [5]},
        releasing={"topic-a": [2]},
        lease_remaining_ms=None,
        lease_expires=None,
        last_error="Timeout",
        failing=True,
        last_failure={
            "code": "Timeout",
            "message": "no answer from cls.ap-guangzhou.tencentcloudapi.com:443 within 1.8s (answer)",
            "age_s": 12.4,
        },
        last_latency_ms=None,
        counters={"beats": 9, "failures": 7, "changes": 1, "lost": 1, "output_dropped": 0},
    ),
    entry(
        consumer="node-3", assigned={}, last_failure={"code": "Unauthorized", "message": "x", "age_s": 4000}
    ),
]


def test_the_status_table() -> None:
    golden("status_table.txt", status_table.render(STATUS_GROUPS))


def test_server_strings_in_the_status_table_cannot_drive_the_terminal() -> None:
    bad = entry(last_failure={"code": "X", "message": "a\x1b]0;pwned\x07b\nc", "age_s": 1})
    text = status_table.render([bad])
    assert "\x1b" not in text and "\x07" not in text and text.count("\n") == 2


def test_the_status_table_without_groups() -> None:
    assert status_table.render([]).splitlines()[-1] == "(no groups)"


def test_a_long_held_list_and_error_are_cut() -> None:
    many = entry(assigned={"demo-logstore": list(range(0, 2000, 2))})
    many["last_failure"] = {"code": "X", "message": "m " * 200, "age_s": 1}
    row = status_table.row(many)
    assert row[3].startswith("1000 [0,2,4,") and len(row[3]) == status_table.MAX_HELD
    assert len(row[-1]) == status_table.MAX_ERROR and row[-1].endswith("...")


RECORDS: list[dict[str, Any]] = [
    {
        "event": "assignment",
        "time": "2026-11-23T12:00:01.000Z",
        "provider": "sls",
        "group": "demo-group",
        "consumer": "c",
        "epoch": 1,
        "assigned": {"demo-logstore": [0, 1, 2, 3]},
        "added": {"demo-logstore": [0, 1]},
        "revoked": {},
        "lease_expires": "2026-11-23T12:00:05.200Z",
    },
    {
        "event": "assignment",
        "time": "2026-11-23T12:00:03.000Z",
        "provider": "cls",
        "group": "g",
        "consumer": "c",
        "epoch": 2,
        "assigned": {"topic-a": [0], "topic-b": [1, 2]},
        "added": {"topic-b": [2]},
        "revoked": {"topic-a": [1]},
        "lease_expires": "2026-11-23T12:00:07.000Z",
    },
    {
        "event": "lease",
        "time": "2026-11-23T12:00:02.500Z",
        "provider": "sls",
        "group": "demo-group",
        "consumer": "c",
        "epoch": 1,
        "lease_expires": "2026-11-23T12:00:07.000Z",
        "latency_ms": 1.234,
    },
    {
        "event": "error",
        "time": "2026-11-23T12:00:04.000Z",
        "provider": "sls",
        "group": "demo-group",
        "consumer": "c",
        "source": "heartbeat",
        "error": {"code": "Timeout", "message": "no answer", "status": None, "request_id": None},
        "retry_in_ms": 150,
    },
    {
        "event": "error",
        "time": "2026-11-23T12:00:04.000Z",
        "source": "control",
        "error": {"code": "InvalidJson", "message": "socket: not JSON", "status": None, "request_id": None},
    },
    {
        "event": "lost",
        "time": "2026-11-23T12:00:09.000Z",
        "provider": "sls",
        "group": "demo-group",
        "consumer": "c",
        "epoch": 2,
        "lost": {"demo-logstore": [0, 1, 2, 3]},
        "reason": "lease_expired",
    },
    {**entry(), "event": "status"},
    {
        "event": "stopped",
        "time": "2026-11-23T12:00:10.000Z",
        "provider": "sls",
        "group": "demo-group",
        "consumer": "c",
        "epoch": 2,
    },
    {"event": "checkpoint", "time": "2026-11-23T12:00:11.000Z", "provider": "sls", "group": "g", "x": 1},
]


def test_the_text_view_of_every_record() -> None:
    golden("text_records.txt", "".join(text_line(r, tz=UTC) + "\n" for r in RECORDS))


def test_the_text_view_in_colour() -> None:
    golden("text_records_colour.txt", "".join(text_line(r, colour=True, tz=UTC) + "\n" for r in RECORDS))


def test_the_example_line_of_the_issue() -> None:
    line = text_line(RECORDS[0], tz=UTC)
    assert line == "12:00:01 sls demo-group +[0,1] -[] held [0-3] lease 4.2s"


def test_server_strings_cannot_drive_the_terminal() -> None:
    rec = dict(RECORDS[3], group="g\x1b[2J", error={"code": "X\n", "message": "a\x9bb\rc"})
    line = text_line(rec, colour=True, tz=UTC)
    assert "\x1b[2J" not in line and "\n" not in line and "\r" not in line and "\x9b" not in line
    assert "g\\x1b[2J" in line


def test_the_text_encoder_writes_one_line_per_record() -> None:
    data = encoder_for("text")(RECORDS[0])
    assert data.endswith(b"\n") and data.count(b"\n") == 1 and b"+[0,1]" in data


@pytest.mark.parametrize(
    ("tty", "env", "expected"),
    [
        (True, {"TERM": "xterm-256color"}, True),
        (False, {"TERM": "xterm"}, False),
        (True, {"TERM": "xterm", "NO_COLOR": "1"}, False),
        (True, {"TERM": "xterm", "NO_COLOR": ""}, True),  # no-color.org: set and not empty
        (True, {"TERM": "dumb"}, False),
    ],
)
def test_colour_only_on_a_terminal_that_wants_it(tty: bool, env: dict[str, str], expected: bool) -> None:
    assert use_colour(tty, env) is expected


def test_shard_ranges() -> None:
    assert ranges([3, 0, 1, 2, 7, 9, 10]) == "0-3,7,9,10"
    assert shard_text({}) == "[]"
    assert shard_text({"a": [1]}, single_topic=False) == "a[1]"
