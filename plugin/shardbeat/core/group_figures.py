"""A group's counters and the consistent copy of its figures that `status` and /metrics read."""

from __future__ import annotations

from dataclasses import dataclass

from shardbeat.core.histogram import HistogramSnapshot


@dataclass(slots=True)
class Counters:
    beats: int = 0
    failures: int = 0
    changes: int = 0
    lost: int = 0


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """One group's figures at one instant (runtime/metrics.py SessionFigures reads these)."""

    provider: str
    group: str
    consumer: str
    scope: str  # SLS "project/logstore", CLS "region/logset_id": tells same-named groups apart
    epoch: int
    assigned: int  # shard count
    releasing: int
    lease_remaining: float | None  # seconds; None when no lease is held
    clock_offset: float
    beats: int
    failures: int
    changes: int
    lost: int
    last_error: str | None
    latency: HistogramSnapshot
