"""Answers whose `Date` header the parser refused (providers.server_values.http_date: malformed, such as
a year 0000, or outside 2000-2099): the clock offset ignores them (this host's clock keeps signing), and
the log says so, at a bounded rate: the first per endpoint at once, then one per endpoint every
NOTE_EVERY seconds with the count of those in between (a proxy that mangles Date would otherwise write
a line per heartbeat).
"""

from __future__ import annotations

import logging

from shardbeat.providers.server_values import text

log = logging.getLogger("shardbeat.runner")

NOTE_EVERY = 600.0


class RefusedDates:
    def __init__(self, every: float = NOTE_EVERY) -> None:
        self._every = every
        self._noted: dict[str, tuple[float, int]] = {}  # endpoint -> (last note, refusals since)

    def note(self, where: str, value: str, mono: float) -> None:
        """An answer from `where` (host:port) carried Date `value`, refused; `mono`: now (monotonic)."""
        last = self._noted.get(where)
        if last is not None and mono - last[0] < self._every:
            self._noted[where] = (last[0], last[1] + 1)
            return
        self._noted[where] = (mono, 0)
        since = f" ({last[1]} more since the last note)" if last is not None and last[1] else ""
        log.warning(
            "%s sent a malformed or implausible Date header %r: ignored, this host's clock signs "
            "requests (a proxy or load balancer in between may rewrite it)%s",
            where,
            text(value, 64),
            since,
        )
