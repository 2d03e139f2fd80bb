"""On-demand heartbeats (`{"op": "heartbeat"}`, `reload`) are coalesced and spaced per group.

A control client looping on `heartbeat` must not turn into a request flood (CLS allows 20 requests
a second per account, and answers the rest with RequestLimitExceeded). Per group, an on-demand beat
starts no sooner than `spacing(interval)` after the previous beat was sent, and requests that arrive
in the meantime share that one beat. The spacing is a quarter of the interval, within 0.25..1 s:
an operator's ask is answered within a second, and a loop adds at most one beat a second per group
(four a second for intervals under 1 s, whose grid is already that busy). All groups together start
at most PROCESS_RATE on-demand beats a second (OnDemandBudget).
"""

from __future__ import annotations

MIN_SPACING = 0.25
MAX_SPACING = 1.0


def spacing(interval: float) -> float:
    return min(MAX_SPACING, max(MIN_SPACING, interval / 4))


def on_demand_at(now: float, last_sent: float | None, interval: float) -> float:
    """When an on-demand beat asked for at `now` may go (monotonic seconds)."""
    if last_sent is None:
        return now
    return max(now, last_sent + spacing(interval))


# Process-wide: CLS allows 20 requests a second per account (providers/cls.py CLS_RATE_LIMIT; core
# imports none of ours); on-demand beats of every group together take at most half of that, so a
# config the doctor finds inside half the budget stays inside all of it.
PROCESS_RATE = 10.0


class OnDemandBudget:
    """Hands out start times for on-demand beats, at most `rate` a second across all groups."""

    def __init__(self, rate: float = PROCESS_RATE) -> None:
        self._gap = 1.0 / rate
        self._next = float("-inf")

    def earliest(self, at: float) -> float:
        """The earliest start at or after `at` that keeps the rate (nothing is taken)."""
        return max(at, self._next)

    def slot(self, at: float) -> float:
        """The earliest start at or after `at` that keeps the rate; the slot is taken. Take only a
        slot that will be used: one taken for nothing delays every later ask of every group."""
        start = self.earliest(at)
        self._next = start + self._gap
        return start
