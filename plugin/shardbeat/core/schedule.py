"""When to send the next heartbeat: a fixed-rate grid on the monotonic clock, plus retry backoff.

Ticks sit at `start + k * interval`. After any attempt the next tick is the first one strictly after
`now`, so a slow call or a frozen process skips the ticks it missed instead of bursting them, and
the grid never drifts however late each beat runs.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Schedule:
    interval: float
    start: float  # monotonic time of tick 0 (the first beat)

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError("interval must be positive")

    def next_tick(self, now: float) -> float:
        """The first tick strictly after `now` (tick 0 itself while `now` is before the start)."""
        if now < self.start:
            return self.start
        k = math.floor((now - self.start) / self.interval) + 1
        tick = self.start + k * self.interval
        # Float rounding can land a hair at or before `now`; step on rather than fire twice.
        while tick <= now:
            k += 1
            tick = self.start + k * self.interval
        return tick


@dataclass(slots=True)
class Backoff:
    """Capped exponential backoff with jitter ("equal jitter": half fixed, half random).

    The first retry comes quickly (`initial`), so one lost packet costs well under a second; repeated
    failures spread out to `maximum` so a down endpoint is not hammered.
    """

    initial: float = 0.2
    maximum: float = 5.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return base / 2 + self.rng.uniform(0, base / 2)

    def reset(self) -> None:
        self.attempt = 0


class Retry(enum.Enum):
    """How to react to a failed heartbeat; providers classify errors, the Pacer turns that into a time."""

    FAST = "fast"  # transient (network, 5xx, throttling): quick jittered retry
    RESIGN = "resign"  # our clock is off: correct the offset from the answer, re-sign, retry at once
    REJOIN = "rejoin"  # the server forgot this consumer: drop everything, claim nothing, retry at once
    SLOW = "slow"  # needs an operator (credentials, permissions, missing group): retry on a slow timer


def call_budget(interval: float, lease_remaining: float | None) -> float:
    """Seconds one heartbeat call may take: never past the next tick, never past the lease.

    Waiting on an answer after the lease ran out buys nothing: the shards are already reported lost.
    """
    budget = 0.9 * interval
    if lease_remaining is not None:
        budget = min(budget, lease_remaining)
    return max(budget, 0.05)


@dataclass(slots=True)
class Pacer:
    """One group's heartbeat times: the fixed-rate grid after success, backoff after failure."""

    schedule: Schedule
    fast: Backoff
    slow: Backoff
    streak: int = 0  # consecutive failures

    @classmethod
    def create(cls, interval: float, start: float, rng: random.Random | None = None) -> Pacer:
        rng = rng or random.Random()
        return cls(
            Schedule(interval, start),
            Backoff(initial=0.2, maximum=interval, rng=rng),
            Backoff(initial=max(interval, 5.0), maximum=max(interval, 60.0), rng=rng),
        )

    def after_success(self, now: float) -> float:
        self.fast.reset()
        self.slow.reset()
        self.streak = 0
        return self.schedule.next_tick(now)

    def after_failure(self, now: float, retry: Retry) -> float:
        self.streak += 1
        if retry is Retry.SLOW:
            return max(self.schedule.next_tick(now), now + self.slow.next_delay())
        if retry in (Retry.RESIGN, Retry.REJOIN) and self.streak == 1:
            # The cause is already fixed locally (new clock offset, empty claim): go again now.
            return now
        return min(now + self.fast.next_delay(), self.schedule.next_tick(now))
