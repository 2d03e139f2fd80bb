"""What a credential fetch returns."""

from __future__ import annotations

from dataclasses import dataclass

from shardbeat.providers.base import Credentials


@dataclass(frozen=True, slots=True)
class Issued:
    credentials: Credentials
    expires: float | None  # epoch seconds (the issuer's clock); None: the key does not expire
    answered_by: str  # e.g. "IMDSv2 http://100.100.100.200 role r1", for logs and doctor
    server_time: float | None = None  # the issuer's clock when it answered (its Date header)

    def lifetime(self, local_now: float) -> float | None:
        """Seconds the key has left, measured on the issuer's clock when it said what time it was."""
        if self.expires is None:
            return None
        return self.expires - (self.server_time if self.server_time is not None else local_now)
