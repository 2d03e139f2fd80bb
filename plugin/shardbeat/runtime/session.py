"""One consumer group as the runner drives it: provider, membership, pacing, clock offset, counters.

All of it is mutated under the runner's lock; nothing here does I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from shardbeat.core.lease import Lease, default_margin
from shardbeat.core.membership import Membership
from shardbeat.core.records import Identity
from shardbeat.core.schedule import Pacer
from shardbeat.core.skew import ServerClock
from shardbeat.providers.base import Credentials, Provider


@dataclass
class Counters:
    beats: int = 0
    failures: int = 0
    changes: int = 0
    lost: int = 0


@dataclass(eq=False)
class Session:
    index: int
    provider: Provider
    identity: Identity
    credentials: Credentials
    interval: float
    timeout: float
    membership: Membership
    pacer: Pacer
    server_clock: ServerClock = field(default_factory=ServerClock)
    counters: Counters = field(default_factory=Counters)
    in_flight: bool = False
    due: float = 0.0
    due_version: int = 0
    beat_soon: bool = False  # a beat was asked for while one was in flight
    last_error: str | None = None

    @classmethod
    def create(
        cls,
        index: int,
        provider: Provider,
        identity: Identity,
        credentials: Credentials,
        interval: float,
        timeout: float,
        margin: float | None,
        start: float,
        rng: random.Random,
    ) -> Session:
        lease = Lease(timeout, default_margin(timeout) if margin is None else margin)
        return cls(
            index=index,
            provider=provider,
            identity=identity,
            credentials=credentials,
            interval=interval,
            timeout=timeout,
            membership=Membership(lease),
            pacer=Pacer.create(interval, start, rng),
            due=start,
        )
