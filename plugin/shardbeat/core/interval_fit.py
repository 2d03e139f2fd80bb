"""Fitting the heartbeat interval to the group's real timeout, learnt from the server at start.

The config is checked against the configured timeout; the server's may be shorter. An interval that
does not fit inside the lease (timeout - margin) would let the lease lapse between two successful
beats: `assignment`, `lost`, `assignment`, ... forever. Rather than flap, the group beats faster.
"""

from __future__ import annotations

MIN_INTERVAL = 0.1  # the config's own floor


def fitted_interval(interval: float, timeout: float, margin: float) -> float | None:
    """None when `interval` fits the lease window (timeout - margin); else the interval to use
    instead: a third of the timeout (what the config recommends), and at most half the window so
    one failed beat still leaves time for a retry before the lease runs out."""
    window = timeout - margin
    if interval < window:
        return None
    return max(MIN_INTERVAL, min(timeout / 3, window / 2))
