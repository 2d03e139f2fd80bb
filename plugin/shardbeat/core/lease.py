"""The lease: how long this node may act on what the server last told it.

Like kafka-python's Heartbeat: a tiny object over a monotonic clock that the caller passes in.
The lease runs from the *send* time of the last successful heartbeat, never its receipt: the server
reset our session no earlier than that instant, so `sent_at + timeout` is the earliest moment it
may give our shards to someone else. The margin absorbs clock-rate differences and scheduling.
"""

from __future__ import annotations

from dataclasses import dataclass


def default_margin(timeout: float) -> float:
    return max(1.0, 0.1 * timeout) if timeout > 2.0 else 0.1 * timeout


@dataclass(slots=True)
class Lease:
    timeout: float
    margin: float
    expires_at: float | None = None  # monotonic; None: nothing held under a lease

    def __post_init__(self) -> None:
        if not 0 <= self.margin < self.timeout:
            raise ValueError("lease margin must be >= 0 and below the timeout")

    def deadline_for(self, sent_at: float) -> float:
        return sent_at + self.timeout - self.margin

    def renew(self, sent_at: float) -> float:
        """Extend from a successful heartbeat sent at `sent_at`; a late answer never shortens the lease."""
        deadline = self.deadline_for(sent_at)
        if self.expires_at is None or deadline > self.expires_at:
            self.expires_at = deadline
        return self.expires_at

    def valid(self, now: float) -> bool:
        return self.expires_at is not None and now < self.expires_at

    def remaining(self, now: float) -> float:
        return 0.0 if self.expires_at is None else max(0.0, self.expires_at - now)

    def expired(self, now: float) -> bool:
        """True once a held lease has run out (False when none is held)."""
        return self.expires_at is not None and now >= self.expires_at

    def clear(self) -> None:
        self.expires_at = None
