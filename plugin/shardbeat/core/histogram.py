"""Fixed-bucket latency histograms: pure data, observed on the heartbeat path, rendered elsewhere."""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

# Loopback answers take well under a millisecond, cloud endpoints 5-300 ms, and anything past the
# call budget (0.9 x interval) is a timeout: these bounds resolve all three.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A copy of a histogram: per-bucket (not cumulative) counts, the last one above every bound."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[int]:
        """Counts of observations <= each bound, then the total (the `le="+Inf"` bucket)."""
        running, out = 0, []
        for n in self.counts:
            running += n
            out.append(running)
        return out

    def quantile(self, q: float) -> float | None:
        """Estimate as Prometheus' histogram_quantile does (linear within a bucket); None when empty.

        Observations above the largest bound are reported as that bound: the histogram knows no more.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError("quantile must be within [0, 1]")
        total = self.count
        if total == 0:
            return None
        rank = q * total
        below, lower = 0, 0.0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            if n and below + n >= rank:
                return lower + (bound - lower) * (rank - below) / n
            below += n
            lower = bound
        return self.bounds[-1] if self.bounds else None


class Histogram:
    """Fixed-bucket histogram with one writer (the session's heartbeat) and any number of readers.

    observe() is not atomic as a whole: a concurrent snapshot may miss the observation in progress
    (or see it in `sum` but not in `counts`), which is all a scrape needs. The count is derived from
    the buckets, so `_count` always equals the `+Inf` bucket as the format requires.
    """

    __slots__ = ("_counts", "_sum", "bounds")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        bounds = tuple(float(b) for b in bounds)
        if any(not math.isfinite(b) for b in bounds) or any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ValueError("histogram bounds must be finite and strictly increasing")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        if seconds != seconds:  # NaN: no bucket holds it, and it would poison the sum
            return
        # bisect_left: the first bound >= seconds, i.e. Prometheus' `le` (less or equal).
        self._counts[bisect_left(self.bounds, seconds)] += 1
        self._sum += seconds

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self._counts), self._sum)

    @property
    def count(self) -> int:
        return sum(self._counts)
