"""Repeated identical errors summarised in the log instead of repeated every retry. Pure: the
caller passes the time (monotonic seconds).

    summary = ErrorSummary(quiet=60)
    verdict = summary.failed("Timeout", now)   # log it? and how many were left out before it
    gone = summary.recovered(now)              # the streak that just ended, to log "ok again"

The first failure of a streak is logged at once, and so is a failure that differs from the one
last logged. The same failure again is counted, not logged, until `quiet` seconds have passed
since the last line; then one line carries the count ("... 29 more times in 60s").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    log: bool
    repeats: int  # identical failures left out since the last line logged for this streak
    since: float  # seconds over which they happened


@dataclass(frozen=True, slots=True)
class Streak:
    failures: int
    duration: float  # seconds from its first failure to the recovery


class ErrorSummary:
    def __init__(self, quiet: float = 60.0) -> None:
        self.quiet = quiet
        self._key: str | None = None  # the failure last logged
        self._logged_at = 0.0
        self._held_back = 0
        self._first_at: float | None = None
        self._failures = 0

    def failed(self, key: str, now: float) -> Verdict:
        if self._first_at is None:
            self._first_at = now
        self._failures += 1
        if key != self._key or now - self._logged_at >= self.quiet:
            verdict = Verdict(True, self._held_back if key == self._key else 0, now - self._logged_at)
            self._key, self._logged_at, self._held_back = key, now, 0
            return verdict
        self._held_back += 1
        return Verdict(False, self._held_back, now - self._logged_at)

    def recovered(self, now: float) -> Streak | None:
        """A success: the streak that ended (None if there was none); the next failure logs at once."""
        if self._first_at is None:
            return None
        streak = Streak(self._failures, now - self._first_at)
        self._key, self._held_back, self._first_at, self._failures = None, 0, None, 0
        return streak
