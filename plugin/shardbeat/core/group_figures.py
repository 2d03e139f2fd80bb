"""A group's counters and the consistent copy of its figures that `status` and /metrics read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from shardbeat.core import records, shards
from shardbeat.core.histogram import HistogramSnapshot
from shardbeat.core.records import Instant, Record

if TYPE_CHECKING:
    from shardbeat.core.driver import GroupDriver


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


def status_record(self: GroupDriver, at: Instant, output_dropped: int) -> Record:
    """The group's `status` record."""
    m = self.membership
    c = self.counters
    counters = {"beats": c.beats, "failures": c.failures, "changes": c.changes, "lost": c.lost}
    counters["output_dropped"] = output_dropped
    if self.checkpoints is not None:
        counters["checkpoints_committed"] = self.checkpoints.committed
        counters["checkpoints_dropped"] = self.checkpoints.dropped
    expires = m.lease.expires_at if m.lease.valid(at.mono) else None
    return records.status(
        self.identity,
        at,
        m.epoch,
        m.assigned,
        m.releasing,
        expires,
        self.last_error,
        counters,
        self.server_clock.offset,
        self.latency.snapshot(),
    )


def snapshot(self: GroupDriver, now: float) -> GroupSnapshot:
    """A consistent copy of the group's figures (for /metrics)."""
    m = self.membership
    return GroupSnapshot(
        provider=self.identity.provider,
        group=self.identity.group,
        consumer=self.identity.consumer,
        scope=self.scope,
        epoch=m.epoch,
        assigned=shards.count(m.assigned),
        releasing=shards.count(m.releasing),
        lease_remaining=m.lease.remaining(now) if m.lease.valid(now) else None,
        clock_offset=self.server_clock.offset,
        beats=self.counters.beats,
        failures=self.counters.failures,
        changes=self.counters.changes,
        lost=self.counters.lost,
        last_error=self.last_error,
        latency=self.latency.snapshot(),
    )
