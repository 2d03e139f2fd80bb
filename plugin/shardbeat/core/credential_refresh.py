"""When to refresh temporary credentials, and which ones may still be used: pure, time is a parameter.

Temporary keys (ECS/CVM instance roles, STS AssumeRoleWithOIDC / AssumeRoleWithWebIdentity) carry an
expiry instant on the wall clock. It is turned into a monotonic deadline once, when the key arrives,
so a wall-clock jump later cannot make us use a key past its end or throw away a good one.

Schedule: refresh at 2/3 of the lifetime or REFRESH_BEFORE seconds before the end, whichever comes
first, so that several failed attempts still fit before the key runs out. A failed attempt keeps the
current key (while it lasts) and tries again after a capped, growing pause that never overshoots
the refresh margin of the key in hand.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Generic, TypeVar

from shardbeat.core.redaction import clip

REFRESH_FRACTION = 2.0 / 3.0
REFRESH_BEFORE = 180.0  # seconds before the end at the latest
RETRY_FIRST = 1.0  # seconds after a first failed attempt
RETRY_MAX = 60.0  # longest pause between failed attempts
MIN_SPACING = 10.0
EXPIRY_SAFETY = 5.0  # a key this close to its end is no longer handed out (a request takes time)

K = TypeVar("K")


def parse_expiration(text: object) -> float:
    """`2026-11-30T21:00:00Z` (Alibaba metadata and STS) -> epoch seconds. Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError("Expiration is not a string")
    try:
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise ValueError(f"Expiration {clip(text, 40)!r} is not YYYY-MM-DDTHH:MM:SSZ") from None
    return moment.replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    """The schedule's constants; tests shrink them to run keys that live seconds instead of hours."""

    fraction: float = REFRESH_FRACTION
    before: float = REFRESH_BEFORE
    safety: float = EXPIRY_SAFETY
    retry_first: float = RETRY_FIRST
    retry_max: float = RETRY_MAX
    min_spacing: float = MIN_SPACING  # an asked-for refresh (rejected key, SIGHUP) at most this often

    def refresh_due(self, obtained: float, expires: float) -> float:
        """When to fetch a new key for one obtained at `obtained` that ends at `expires` (same clock)."""
        lifetime = max(0.0, expires - obtained)
        return obtained + max(0.0, min(lifetime * self.fraction, lifetime - self.before))

    def retry_delay(self, failures: int) -> float:
        """Pause after the `failures`-th failed attempt in a row (1-based): 1, 2, 4, ... capped."""
        return min(self.retry_max, self.retry_first * 2.0 ** max(0, failures - 1))


DEFAULT_POLICY = RefreshPolicy()


@dataclass(frozen=True)  # no slots: a slotted generic dataclass breaks Held[T]() calls
class Held(Generic[K]):
    """The key in hand and the refresh bookkeeping of one credential source (monotonic times)."""

    key: K | None = None
    expires: float | None = None  # None: the key does not expire (long-term keys from a profile)
    obtained: float | None = None
    next_attempt: float = 0.0  # when the refresher should fetch next
    failures: int = 0  # failed attempts since the last success
    last_error: str | None = None
    policy: RefreshPolicy = DEFAULT_POLICY

    def usable(self, now: float) -> K | None:
        """The key, unless there is none or it is (about to be) expired."""
        if self.key is None:
            return None
        if self.expires is not None and now >= self.expires - self.policy.safety:
            return None
        return self.key

    def fetched(self, key: K, now: float, expires: float | None) -> Held[K]:
        """A fresh key arrived at `now` that ends at `expires` (monotonic; None: never)."""
        policy = self.policy
        due = float("inf") if expires is None else policy.refresh_due(now, expires)
        if expires is not None and due - now < policy.retry_first:
            due = (
                now + policy.retry_first
            )  # a server handing out nearly-dead keys must not cause a tight loop
        return Held(key, expires, now, due, 0, None, policy)

    def failed(self, now: float, error: str) -> Held[K]:
        """An attempt failed: keep the key, try again later (sooner than the key's end if one is held)."""
        failures = self.failures + 1
        first = self.policy.retry_first
        due = now + self.policy.retry_delay(failures)
        if self.key is not None and self.expires is not None and self.expires > now:
            # Keep several tries inside the key's remaining life.
            due = min(due, max(now + first, now + (self.expires - now) / 4))
        return replace(self, next_attempt=due, failures=failures, last_error=error)

    def refresh_now(self, now: float) -> Held[K]:
        """Someone asked for a fresh key (the server rejected this one, SIGHUP): fetch at once, unless
        the key in hand is younger than min_spacing (a burst of rejections makes one fetch)."""
        if self.obtained is not None and now - self.obtained < self.policy.min_spacing:
            return self
        return replace(self, next_attempt=min(self.next_attempt, now))
