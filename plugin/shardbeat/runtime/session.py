"""One consumer group as the runner drives it: provider, membership, pacing, clock offset, counters.

All of it is mutated under the runner's lock; nothing here does I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shardbeat.core import shards
from shardbeat.core.error_summary import ErrorSummary
from shardbeat.core.histogram import Histogram, HistogramSnapshot
from shardbeat.core.lease import Lease, default_margin
from shardbeat.core.membership import Membership
from shardbeat.core.records import Identity
from shardbeat.core.schedule import Pacer
from shardbeat.core.shards import ShardMap
from shardbeat.core.skew import ServerClock
from shardbeat.providers.base import Provider
from shardbeat.runtime.checkpointing import GroupCheckpoints
from shardbeat.runtime.credentials import CredentialSource, Keys

if TYPE_CHECKING:
    from shardbeat.config import GroupConfig


@dataclass
class Counters:
    beats: int = 0
    failures: int = 0
    changes: int = 0
    lost: int = 0


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """A consistent copy of one session's figures, for the `status` record and /metrics."""

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


@dataclass(eq=False)
class Session:
    index: int
    config: GroupConfig
    provider: Provider
    identity: Identity
    credentials: Keys
    interval: float
    timeout: float
    membership: Membership
    pacer: Pacer
    server_clock: ServerClock = field(default_factory=ServerClock)
    counters: Counters = field(default_factory=Counters)
    bootstrapped: bool = False
    in_flight: bool = False
    due_version: int = 0
    beat_soon: bool = False  # a beat was asked for while one was in flight
    due_at: float = float("inf")  # monotonic time of the next scheduled beat
    last_sent: float | None = None  # monotonic send time of the last heartbeat
    on_demand: bool = False  # an on-demand beat is owed once the one in flight is answered
    lease_queued: bool = False  # the scheduler holds this session's lease deadline
    last_date: tuple[str, float] = ("", 0.0)  # the last Date header seen and its parse
    last_error: str | None = None  # the code of the failure now in progress; None once a call succeeds
    last_failure: tuple[str, str, float] | None = None  # (code, message, monotonic time): for `status`
    last_latency: float | None = None  # seconds, of the last answered heartbeat
    error_summary: ErrorSummary = field(default_factory=ErrorSummary)  # what the log repeats
    latency: Histogram = field(default_factory=Histogram)  # answered heartbeats, seconds
    # release: ack -> revoked shards waiting for downstream's ack, with the monotonic time we give up
    awaiting_ack: dict[tuple[str, int], float] = field(default_factory=dict)
    checkpoints: GroupCheckpoints | None = None  # the group has `checkpoints` in its config

    @classmethod
    def create(
        cls,
        index: int,
        group: GroupConfig,
        provider: Provider,
        grid_start: float,
        rng: random.Random,
        credentials: Keys | None = None,
    ) -> Session:
        """`grid_start`: tick 0 of the fixed-rate grid the beats keep after the first one;
        `credentials`: the group's refreshing source, if it has one (else its static keys)."""
        session = cls(
            index=index,
            config=group,
            provider=provider,
            identity=Identity(group.provider, group.consumer_group, group.consumer),
            credentials=credentials if credentials is not None else CredentialSource(group),
            interval=group.heartbeat_interval,
            timeout=group.timeout,
            membership=Membership(Lease(group.timeout, group.margin)),
            pacer=Pacer.create(group.heartbeat_interval, grid_start, rng),
            checkpoints=GroupCheckpoints.create(group.checkpoints) if group.checkpoints else None,
        )
        return session

    @property
    def release_on_ack(self) -> bool:
        return self.config.release == "ack"

    @property
    def release_grace(self) -> float:
        return self.config.release_grace if self.config.release_grace is not None else self.timeout

    def use_server_timeout(self, timeout: float) -> None:
        """Lease by the group's real timeout (the server's clock is what matters). Before joining only."""
        margin = self.config.lease_margin
        if margin is None or margin >= timeout:
            margin = default_margin(timeout)
        self.timeout = timeout
        self.membership.lease = Lease(timeout, margin)

    def use_interval(self, interval: float, grid_start: float) -> None:
        """Beat every `interval` seconds from `grid_start` on (fitted to the server's timeout)."""
        self.interval = interval
        self.pacer = Pacer.create(interval, grid_start, self.pacer.fast.rng)

    def matches(self, group: str | None, provider: str | None, consumer: str | None) -> bool:
        who = self.identity
        return (
            (group is None or group == who.group)
            and (provider is None or provider == who.provider)
            and (consumer is None or consumer == who.consumer)
        )

    def snapshot(self, now: float) -> SessionSnapshot:
        m = self.membership
        return SessionSnapshot(
            provider=self.identity.provider,
            group=self.identity.group,
            consumer=self.identity.consumer,
            scope="/".join(self.config.identity.scope),
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

    def releasing_among(self, given: ShardMap) -> ShardMap:
        return {t: ids & given.get(t, frozenset()) for t, ids in self.membership.releasing.items()}

    # -- release: ack bookkeeping

    def await_acks(self, revoked: ShardMap, give_up: float) -> None:
        for topic, ids in revoked.items():
            for shard in ids:
                self.awaiting_ack[(topic, shard)] = give_up

    def forget_acks(self, released: ShardMap | None) -> None:
        """Stop waiting for these shards' acks (None: for all of them)."""
        if released is None:
            self.awaiting_ack.clear()
            return
        for topic, ids in released.items():
            for shard in ids:
                self.awaiting_ack.pop((topic, shard), None)

    def overdue_acks(self, now: float) -> ShardMap:
        overdue: dict[str, set[int]] = {}
        for (topic, shard), give_up in self.awaiting_ack.items():
            if give_up <= now:
                overdue.setdefault(topic, set()).add(shard)
        return shards.shard_map(overdue)


def make_provider(group: GroupConfig) -> Provider:
    if group.provider == "sls":
        from shardbeat.providers.sls import SlsProvider

        assert group.project is not None and group.logstore is not None
        return SlsProvider(
            group.endpoint,
            group.project,
            group.logstore,
            group.consumer_group,
            group.consumer,
            signature_version=group.signature_version,
            region=group.region,
        )
    from shardbeat.providers.cls import ClsProvider

    assert group.region is not None and group.logset_id is not None and group.topics is not None
    return ClsProvider(
        group.endpoint, group.region, group.logset_id, group.topics, group.consumer_group, group.consumer
    )
