"""The two clocks the shell reads, bundled so tests can inject fakes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from shardbeat.core.records import Instant


@dataclass(frozen=True, slots=True)
class Clock:
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time

    def instant(self) -> Instant:
        return Instant(self.wall(), self.monotonic())
