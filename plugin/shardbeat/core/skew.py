"""Server clock offset, estimated from the `Date` header of answers.

`Date` has one-second resolution, so one answer only bounds the offset: the server's clock read a
value in [date, date + 1) at some instant between our send and our receipt. The estimate is the middle
of that window, and it is applied only when it is clearly non-zero, so a healthy host keeps signing
with its own clock (which is what tools like NTP already fix) and a badly skewed one is corrected after
a single answer, before the server's 15 min (SLS) / 5 min (CLS) window bites.
"""

from __future__ import annotations

from dataclasses import dataclass

# Below this the window's own width (1 s + round trip) makes the estimate noise.
APPLY_ABOVE = 2.0
WARN_ABOVE = 60.0


@dataclass(slots=True)
class ServerClock:
    offset: float = 0.0  # seconds to add to our wall clock to get the server's

    def observe(self, server_date: float, sent_wall: float, received_wall: float) -> float:
        """Fold in one answer's Date (epoch seconds, whole); returns the offset now in force."""
        low = server_date - received_wall
        high = server_date + 1.0 - sent_wall
        estimate = (low + high) / 2
        self.offset = estimate if abs(estimate) > APPLY_ABOVE else 0.0
        return self.offset

    def now(self, wall: float) -> float:
        return wall + self.offset
