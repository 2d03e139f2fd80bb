"""Checkpoints: where a shard starts, and the progress downstream commits, fenced by the lease.

Pure: no clock reads, no I/O. The runner asks the book what to send and when, sends it, and reports
the outcome; the book answers with what was committed, what was dropped, and which revoked shards
may now be released.

- Values are offered only for shards held under a valid lease (the caller checks, and checks again
  when it takes a batch to send: a shard lost in between is dropped, never sent).
- Pending values are coalesced per shard (the latest wins) and sent `interval` seconds after the
  first of them arrived, and never sooner than `interval` after the previous send started: one
  batch per group per interval. A flush (`urgent`) sends at once: before a revoked shard is
  released, and during a clean stop.
- At most one batch is in flight. A retryable failure re-queues the batch's values (unless newer ones
  came meanwhile) with a short backoff, at most MAX_ATTEMPTS sends in a row; a refusal, or the last
  attempt, drops them (the caller writes an error record). Nothing is retried forever.
- A revoked shard with a value pending or in flight is released only once that value is settled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shardbeat.core import shards
from shardbeat.core.shards import ShardMap

Checkpoint = str | int  # an SLS cursor string, a CLS integer offset
ShardKey = tuple[str, int]  # (topic, shard id)
Start = str | float  # "begin" | "end" | unix seconds: where a shard without a checkpoint starts

BEGIN = "begin"
END = "end"
DEFAULT_START: Start = END
DEFAULT_COMMIT_INTERVAL = 5.0
FROM_COMMITTED = "committed"
FROM_TIME = "time"
MAX_ATTEMPTS = 3  # sends of one batch in a row before its values are dropped
RETRY_BASE = 0.2  # seconds before the first retry; doubles each attempt, capped at the interval
# The outcome of one value's send.
OK = "ok"
RETRY = "retry"  # a passing fault (timeout, 5xx, throttling): worth another attempt
REFUSED = "refused"  # the server said no (e.g. ConsumerNotMatch): dropped, never retried


def start_from(start: Start) -> str:
    """The `from` a position fetched for `start` reports: "begin", "end" or "time"."""
    return start if isinstance(start, str) else FROM_TIME


@dataclass(frozen=True, slots=True)
class Position:
    """Where downstream starts reading a shard, and why there."""

    checkpoint: Checkpoint
    source: str  # "committed" | "begin" | "end" | "time" (the record's `from`)


def keys_of(shard_map: ShardMap) -> list[ShardKey]:
    return [(topic, shard) for topic in sorted(shard_map) for shard in sorted(shard_map[topic])]


def map_of(keys: Iterable[ShardKey]) -> dict[str, frozenset[int]]:
    grouped: dict[str, set[int]] = {}
    for topic, shard in keys:
        grouped.setdefault(topic, set()).add(shard)
    return shards.shard_map(grouped)


def is_held(key: ShardKey, held: ShardMap) -> bool:
    return key[1] in held.get(key[0], frozenset())


def values_json(values: Mapping[ShardKey, Checkpoint]) -> dict[str, dict[str, Checkpoint]]:
    """{topic: {"<shard id>": value}}, topics and shards in order (the record and control shape)."""
    out: dict[str, dict[str, Checkpoint]] = {}
    for topic, shard in sorted(values):
        out.setdefault(topic, {})[str(shard)] = values[(topic, shard)]
    return out


def positions_json(positions: Mapping[ShardKey, Position]) -> dict[str, dict[str, dict[str, Checkpoint]]]:
    """The `start` field: {topic: {"<shard id>": {"checkpoint": value, "from": source}}}."""
    out: dict[str, dict[str, dict[str, Checkpoint]]] = {}
    for topic, shard in sorted(positions):
        position = positions[(topic, shard)]
        out.setdefault(topic, {})[str(shard)] = {"checkpoint": position.checkpoint, "from": position.source}
    return out


def split_held(
    values: Mapping[ShardKey, Checkpoint], held: ShardMap
) -> tuple[dict[ShardKey, Checkpoint], dict[ShardKey, Checkpoint]]:
    """(values of held shards, values of shards this node does not hold)."""
    mine = {key: value for key, value in values.items() if is_held(key, held)}
    others = {key: value for key, value in values.items() if key not in mine}
    return mine, others


@dataclass(frozen=True, slots=True)
class Batch:
    """Values on their way to the server (one at a time per group)."""

    values: dict[ShardKey, Checkpoint]
    attempt: int  # 1 for the first send of these values


@dataclass(slots=True)
class CommitBook:
    interval: float
    pending: dict[ShardKey, Checkpoint] = field(default_factory=dict)
    pending_since: float | None = None  # monotonic time the oldest pending value arrived
    in_flight: Batch | None = None
    last_send: float = -math.inf
    urgent: bool = False  # flush as soon as nothing is in flight
    retry_at: float | None = None  # a failed batch is re-queued: resend then, not at the interval
    _attempt: int = 0  # attempts already spent on the values in `pending` that came back from a failure
    _releasing: set[ShardKey] = field(default_factory=set)  # revoked shards waiting for their commit

    def offer(self, values: Mapping[ShardKey, Checkpoint], now: float) -> None:
        """Queue values of held shards (the caller checked); a newer value replaces a pending one."""
        if not values:
            return
        if not self.pending:
            self.pending_since = now
        self.pending.update(values)

    def flush(self) -> None:
        """Send what is pending at once (and again after the batch in flight, if any)."""
        self.urgent = True

    def due_at(self) -> float | None:
        """When the next batch should be sent; None while one is in flight or nothing is pending."""
        if self.in_flight is not None or not self.pending:
            return None
        if self.urgent:
            return -math.inf
        if self.retry_at is not None:
            return self.retry_at
        assert self.pending_since is not None
        return max(self.pending_since, self.last_send) + self.interval

    def take(self, held: ShardMap, now: float) -> tuple[Batch | None, dict[ShardKey, Checkpoint]]:
        """Start a send now: (the batch of held shards' values, values dropped as no longer held).

        Nothing is sent for a shard that is not held under a valid lease at this instant.
        """
        mine, lost = split_held(self.pending, held)
        self.pending = {}
        self.pending_since = None
        self.urgent = False
        self.retry_at = None
        attempt, self._attempt = self._attempt + 1, 0
        if not mine:
            return None, lost
        self.in_flight = Batch(mine, attempt)
        self.last_send = now
        return self.in_flight, lost

    def settle(
        self, outcomes: Mapping[ShardKey, str], now: float
    ) -> tuple[dict[ShardKey, Checkpoint], dict[ShardKey, Checkpoint]]:
        """The batch in flight is over: each key's outcome is OK, RETRY (a passing fault) or REFUSED.

        Returns (committed values, dropped values). A retryable value is re-queued with a short
        backoff unless it has had MAX_ATTEMPTS sends; a value superseded meanwhile by a newer
        pending one is not re-sent (the newer one is what counts now). Keys without an outcome
        count as RETRY (never sent).
        """
        batch, self.in_flight = self.in_flight, None
        if batch is None:
            return {}, {}
        committed: dict[ShardKey, Checkpoint] = {}
        dropped: dict[ShardKey, Checkpoint] = {}
        again: dict[ShardKey, Checkpoint] = {}
        for key, value in batch.values.items():
            outcome = outcomes.get(key, RETRY)
            if outcome == OK:
                committed[key] = value
            elif outcome == REFUSED or batch.attempt >= MAX_ATTEMPTS:
                dropped[key] = value
            elif key not in self.pending:
                again[key] = value
        if again:
            self.pending = {**again, **self.pending}
            self.pending_since = now if self.pending_since is None else self.pending_since
            self._attempt = batch.attempt
            self.retry_at = now + min(self.interval, RETRY_BASE * 2 ** (batch.attempt - 1))
        return committed, dropped

    def drop(self, keep: ShardMap) -> dict[ShardKey, Checkpoint]:
        """Forget pending values of shards not in `keep` (lost, released); returns them."""
        mine, gone = split_held(self.pending, keep)
        self.pending = mine
        if not mine:
            self.pending_since = None
            self.retry_at = None
            self._attempt = 0
        self._releasing = {key for key in self._releasing if is_held(key, keep)}
        return gone

    def touches(self, key: ShardKey) -> bool:
        """A value for this shard is pending or in flight."""
        return key in self.pending or (self.in_flight is not None and key in self.in_flight.values)

    def hold_release(self, revoked: ShardMap) -> ShardMap:
        """Shards of `revoked` that must wait for their commit (which is flushed now); the rest
        may be released at once."""
        waiting = [key for key in keys_of(revoked) if self.touches(key)]
        if waiting:
            self._releasing.update(waiting)
            self.flush()
        return map_of(waiting)

    def let_go(self, key: ShardKey) -> bool:
        """Downstream has let go of this revoked shard: only the value it had then is still sent."""
        return key in self._releasing

    def releasable(self) -> ShardMap:
        """Revoked shards whose commit has settled since they were held back: release them now."""
        done = [key for key in self._releasing if not self.touches(key)]
        self._releasing.difference_update(done)
        return map_of(done)

    @property
    def waiting_release(self) -> ShardMap:
        return map_of(self._releasing)
