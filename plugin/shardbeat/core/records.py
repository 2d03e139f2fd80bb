"""Events and failures -> record dicts of the output contract (schemas/record.schema.json).

Records carry wall-clock instants (RFC 3339 UTC, milliseconds); the engine works in monotonic time, so
each conversion takes the pair (wall_now, mono_now) read once by the caller.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shardbeat.core import shards
from shardbeat.core.checkpoints import Checkpoint, Position, ShardKey, positions_json, values_json
from shardbeat.core.histogram import HistogramSnapshot
from shardbeat.core.membership import AssignmentChanged, Event, LeaseRenewed, Lost
from shardbeat.core.shards import ShardMap

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Identity:
    provider: str
    group: str
    consumer: str


@dataclass(frozen=True, slots=True)
class Instant:
    """One reading of both clocks, so monotonic deadlines can be shown as wall-clock times."""

    wall: float
    mono: float

    def wall_of(self, mono: float) -> float:
        return self.wall + (mono - self.mono)


# Formatted seconds: a record carries two of them (`time`, and `lease_expires` some seconds later), so
# one cached second would miss on every call; a few are kept (a dict: one lookup, safe across threads).
_SECONDS: dict[int, str] = {}
_KEEP_SECONDS = 16


def rfc3339(wall: float) -> str:
    """UTC with milliseconds and a `Z`, e.g. 2026-11-23T17:10:00.123Z (sortable as text).

    Truncated, never rounded up: a printed `lease_expires` must not be later than the real deadline.
    """
    ms = math.floor(wall * 1000)
    second = ms // 1000
    text = _SECONDS.get(second)
    if text is None:
        if len(_SECONDS) >= _KEEP_SECONDS:
            _SECONDS.clear()
        text = _SECONDS[second] = f"{_dt.datetime.fromtimestamp(second, _dt.UTC):%Y-%m-%dT%H:%M:%S}"
    return f"{text}.{ms % 1000:03d}Z"


def _base(event: str, who: Identity, at: Instant) -> Record:
    return {
        "event": event,
        "time": rfc3339(at.wall),
        "provider": who.provider,
        "group": who.group,
        "consumer": who.consumer,
    }


def from_event(
    who: Identity,
    event: Event,
    at: Instant,
    latency_ms: float | None = None,
    start: Mapping[ShardKey, Position] | None = None,
) -> Record:
    """`start`: a checkpoints group's positions of the added shards (those fetched in time)."""
    if isinstance(event, AssignmentChanged):
        rec = _base("assignment", who, at)
        rec["epoch"] = event.epoch
        rec["assigned"] = shards.to_json(event.assigned)
        rec["added"] = shards.to_json(event.added)
        rec["revoked"] = shards.to_json(event.revoked)
        rec["lease_expires"] = rfc3339(at.wall_of(event.lease_expires))
        if start is not None:
            rec["start"] = positions_json(start)
        return rec
    if isinstance(event, LeaseRenewed):
        rec = _base("lease", who, at)
        rec["epoch"] = event.epoch
        rec["lease_expires"] = rfc3339(at.wall_of(event.lease_expires))
        rec["latency_ms"] = round(latency_ms or 0.0, 3)
        return rec
    if isinstance(event, Lost):
        rec = _base("lost", who, at)
        rec["epoch"] = event.epoch
        rec["lost"] = shards.to_json(event.lost)
        rec["reason"] = event.reason
        return rec
    raise TypeError(f"not a membership event: {event!r}")


def error(
    who: Identity,
    at: Instant,
    code: str,
    message: str,
    status: int | None,
    request_id: str | None,
    retry_in: float | None,
    source: str = "heartbeat",
) -> Record:
    """A failed call of a group: `source` is "heartbeat", "bootstrap" (checking/creating the group),
    "credentials" (a credential source could not refresh the keys), "start" (reading a start position)
    or "commit" (a checkpoint commit; also a value dropped because its shard was lost before it could be
    sent), or "control" for a refused control op of a group."""
    rec = _base("error", who, at)
    rec["source"] = source
    rec["error"] = {"code": code, "message": message, "status": status, "request_id": request_id}
    if retry_in is not None:  # None: nothing will be retried (a dropped checkpoint, a refused op)
        rec["retry_in_ms"] = round(retry_in * 1000)
    return rec


def start(who: Identity, at: Instant, epoch: int, positions: Mapping[ShardKey, Position]) -> Record:
    """Positions that could not be fetched in time for their `assignment` record."""
    rec = _base("start", who, at)
    rec["epoch"] = epoch
    rec["start"] = positions_json(positions)
    return rec


def committed(who: Identity, at: Instant, epoch: int, values: Mapping[ShardKey, Checkpoint]) -> Record:
    """The server accepted these checkpoints."""
    rec = _base("committed", who, at)
    rec["epoch"] = epoch
    rec["checkpoints"] = values_json(values)
    return rec


def control_error(at: Instant, code: str, message: str) -> Record:
    """Bad control input: not about any one group, so it carries no provider/group/consumer."""
    return {
        "event": "error",
        "time": rfc3339(at.wall),
        "source": "control",
        "error": {"code": code, "message": message, "status": None, "request_id": None},
    }


def status(
    who: Identity,
    at: Instant,
    epoch: int,
    assigned: ShardMap,
    releasing: ShardMap,
    lease_expires: float | None,
    last_error: str | None,
    counters: dict[str, int],
    clock_offset: float,
    latency: HistogramSnapshot,
) -> Record:
    rec = _base("status", who, at)
    rec["epoch"] = epoch
    rec["assigned"] = shards.to_json(assigned)
    rec["releasing"] = shards.to_json(releasing)
    rec["lease_expires"] = rfc3339(at.wall_of(lease_expires)) if lease_expires is not None else None
    rec["lease_remaining_ms"] = (
        max(0, round((lease_expires - at.mono) * 1000)) if lease_expires is not None else None
    )
    rec["last_error"] = last_error
    rec["counters"] = counters
    rec["clock_offset_s"] = round(clock_offset, 3)
    p50, p99 = latency.quantile(0.5), latency.quantile(0.99)
    rec["latency_ms"] = {
        "count": latency.count,
        "p50": None if p50 is None else round(p50 * 1000, 3),
        "p99": None if p99 is None else round(p99 * 1000, 3),
    }
    return rec


def stopped(who: Identity, at: Instant, epoch: int) -> Record:
    rec = _base("stopped", who, at)
    rec["epoch"] = epoch
    return rec
