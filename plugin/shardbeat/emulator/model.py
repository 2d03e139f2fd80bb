"""Plain data passed between the emulator's HTTP front (server.py) and its service handlers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EmuRequest:
    method: str
    path: str  # without the query string, percent-decoded
    query: Mapping[str, str]  # decoded; last value wins
    raw_query: str  # as received, for signature checks that need raw values
    headers: Mapping[str, str]  # names lower-case
    body: bytes


@dataclass(slots=True)
class EmuResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    # How it goes on the wire (fault effects only): the status line's version, and a delay
    # between bytes (0: the whole answer in one send).
    version: str = "HTTP/1.1"
    trickle: float = 0.0
