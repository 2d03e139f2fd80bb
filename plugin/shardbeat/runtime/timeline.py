"""The scheduler's one heap: what is due when, on the monotonic clock, earliest first.

One heap serves thousands of groups (no thread or timer per group). Entries are never removed: a
superseded one is recognised by its version when it comes due, and skipped by the caller.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class Due(NamedTuple, Generic[T]):
    """A tuple, so the heap compares entries in C (a dataclass's __lt__ ran a dozen times per push and
    pop); `seq` is unique, so `item` is never compared."""

    at: float
    seq: int  # ties in `at` keep insertion order
    kind: int
    item: T
    version: int


class Timeline(Generic[T]):
    def __init__(self) -> None:
        self._heap: list[Due[T]] = []
        self._seq = itertools.count()

    def push(self, at: float, kind: int, item: T, version: int = 0) -> bool:
        """Add an entry; True when it is now the earliest (a sleeping scheduler must wake sooner)."""
        entry = Due(at, next(self._seq), kind, item, version)
        heapq.heappush(self._heap, entry)
        return self._heap[0] is entry

    def pop_due(self, now: float) -> Iterator[Due[T]]:
        """Every entry due at `now`, earliest first (entries pushed meanwhile are included if due)."""
        while self._heap and self._heap[0].at <= now:
            yield heapq.heappop(self._heap)

    def wait(self, now: float) -> float | None:
        """Seconds until the earliest entry (None: nothing queued)."""
        return self._heap[0].at - now if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
