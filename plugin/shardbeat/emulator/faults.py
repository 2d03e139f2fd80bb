"""Injected faults: rules that match requests and make the emulator misbehave on purpose.

A rule (JSON, POST /_admin/faults) matches on any of service, consumer, group, action (all given
ones must match; action is case-insensitive and "heartbeat" names both services' heartbeat), and
has one effect. Services: sls, cls, metadata (actions ecs-token, ecs-role, cvm-role) and sts
(AssumeRoleWithOIDC, AssumeRoleWithWebIdentity).

    status  answer with an error: SLS `status` (default 500) and `error_code` (default by status);
            CLS HTTP 200 with Response.Error `error_code` (default InternalError), or the given
            non-200 `status` with the same body (a proxy-style failure)
    delay   wait `seconds`, then process and answer normally
    hang    hold the connection without answering until the faults are cleared, the server stops,
            or `seconds` (default 60) pass; then close it without an answer
    reset   close the connection at once without answering (TCP RST)
    drop    process the request (state changes!) but close the connection without answering

Misbehaviours of whatever answers in the server's place (a proxy, a captive portal, a broken
server). The request is not processed unless the effect says so:

    trickle    process normally, then write the answer one byte every `seconds` (default 0.05)
    oversized  HTTP 200 JSON with a body of `bytes` bytes (default 2 MiB; at most 64 MiB)
    malformed  HTTP 200 application/json whose body is cut mid-JSON (the service's own shape)
    http10     process normally and answer as HTTP/1.0, closing the connection afterwards
    html200    HTTP 200 text/html: a captive portal's or a load balancer's page
    redirect   HTTP 302 to `location` (default http://127.0.0.1:1/), a small HTML body

Limits: `count` (matching requests affected, then the rule retires) and/or `duration` (seconds on
the emulator's monotonic clock, which POST /_admin/clock {"advance"} also moves). Rules are tried in
the order they were added; the first live match wins.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from shardbeat.emulator.call import CLS, HEARTBEAT_ALIAS, SLS, Call

# The server's own failures, then misbehaviours of whatever answers in its place.
MISBEHAVIOURS = ("trickle", "oversized", "malformed", "http10", "html200", "redirect")
EFFECTS: tuple[str, ...] = ("status", "delay", "hang", "reset", "drop", *MISBEHAVIOURS)
DEFAULT_HANG_LIMIT = 60.0
DEFAULT_TRICKLE = 0.05
MAX_TRICKLE = 1.0  # per byte: slower only ties up a thread for hours
DEFAULT_OVERSIZE = 2 << 20
MAX_OVERSIZE = 64 << 20
DEFAULT_LOCATION = "http://127.0.0.1:1/"
MAX_SECONDS = 3600.0
_MATCH_KEYS = ("service", "consumer", "group", "action")
_KEYS = {*_MATCH_KEYS, "effect", "status", "error_code", "message", "seconds", "count", "duration"}
_KEYS |= {"bytes", "location"}


class FaultError(ValueError):
    """A rule that cannot be used; the message says which field and why."""


@dataclass(slots=True)
class FaultRule:
    id: int
    effect: str
    service: str | None = None
    consumer: str | None = None
    group: str | None = None
    action: str | None = None
    status: int | None = None
    error_code: str | None = None
    message: str | None = None
    seconds: float | None = None
    size: int | None = None  # oversized: body bytes
    location: str | None = None  # redirect: the Location header
    count: int | None = None  # remaining
    until: float | None = None  # monotonic deadline
    hits: int = 0

    def matches(self, call: Call) -> bool:
        if self.service is not None and self.service != call.service:
            return False
        if self.consumer is not None and self.consumer != call.consumer:
            return False
        if self.group is not None and self.group != call.group:
            return False
        if self.action is not None:
            wanted = self.action.lower()
            if wanted == HEARTBEAT_ALIAS:
                return call.is_heartbeat
            return wanted == call.action.lower()
        return True

    def live(self, now: float) -> bool:
        return (self.count is None or self.count > 0) and (self.until is None or now < self.until)

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "effect": self.effect,
            **{key: getattr(self, key) for key in _MATCH_KEYS if getattr(self, key) is not None},
            "status": self.status,
            "error_code": self.error_code,
            "message": self.message,
            "seconds": self.seconds,
            **({"bytes": self.size} if self.size is not None else {}),
            **({"location": self.location} if self.location is not None else {}),
            "count_left": self.count,
            "seconds_left": None if self.until is None else max(0.0, self.until - now),
            "hits": self.hits,
        }


@dataclass(frozen=True, slots=True)
class Hit:
    """A matched rule, and the event a hang waits on (set when faults are cleared or the server stops)."""

    rule: FaultRule
    released: threading.Event


def parse_rule(doc: object, rule_id: int, now: float) -> FaultRule:
    if not isinstance(doc, dict):
        raise FaultError("a fault rule must be a JSON object")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise FaultError(f"unknown key {unknown[0]!r} in fault rule (known: {', '.join(sorted(_KEYS))})")
    effect = doc.get("effect")
    if effect not in EFFECTS:
        raise FaultError(f"effect must be one of {', '.join(EFFECTS)}, not {effect!r}")
    rule = FaultRule(rule_id, effect)
    for key in _MATCH_KEYS:
        value = doc.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise FaultError(f"{key} must be a non-empty string")
        setattr(rule, key, value)
    if rule.service not in (None, SLS, CLS, "metadata", "sts"):
        raise FaultError(f"service must be {SLS!r}, {CLS!r}, 'metadata' or 'sts', not {rule.service!r}")
    status = doc.get("status")
    if status is not None and (type(status) is not int or not 200 <= status <= 599):
        raise FaultError(f"status must be an HTTP status 200..599, not {status!r}")
    rule.status = status
    for key in ("error_code", "message"):
        value = doc.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise FaultError(f"{key} must be a non-empty string")
        setattr(rule, key, value)
    if effect == "status" and status is None and rule.error_code is None:
        raise FaultError("effect 'status' needs a status, an error_code, or both")
    rule.seconds = _seconds(doc.get("seconds"), "seconds")
    if effect == "delay" and rule.seconds is None:
        raise FaultError("effect 'delay' needs seconds")
    if effect == "hang" and rule.seconds is None:
        rule.seconds = DEFAULT_HANG_LIMIT
    if effect == "trickle" and rule.seconds is None:
        rule.seconds = DEFAULT_TRICKLE
    if effect == "trickle" and rule.seconds > MAX_TRICKLE:  # type: ignore[operator]
        raise FaultError(f"trickle seconds (per byte) must be at most {MAX_TRICKLE:g}")
    size = doc.get("bytes")
    if size is not None and (type(size) is not int or not 0 < size <= MAX_OVERSIZE):
        raise FaultError(f"bytes must be an integer in 1..{MAX_OVERSIZE}, not {size!r}")
    if effect == "oversized":
        rule.size = DEFAULT_OVERSIZE if size is None else size
    location = doc.get("location")
    if location is not None and not (
        isinstance(location, str) and location and location.isascii() and location.isprintable()
    ):
        raise FaultError("location must be a non-empty string of printable ASCII")
    if effect == "redirect":
        rule.location = location or DEFAULT_LOCATION
    count = doc.get("count")
    if count is not None and (type(count) is not int or count <= 0):
        raise FaultError(f"count must be a positive integer, not {count!r}")
    rule.count = count
    duration = _seconds(doc.get("duration"), "duration")
    rule.until = None if duration is None else now + duration
    return rule


def _seconds(value: object, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_SECONDS:
        raise FaultError(f"{key} must be a number of seconds in 0..{MAX_SECONDS:g}, not {value!r}")
    return float(value)


class FaultBook:
    """The active rules. Not locked itself: the World calls it under its lock."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._next_id = 1
        self._released = threading.Event()

    def add(self, docs: list[object], now: float) -> list[FaultRule]:
        """Parse and add rules (all or none)."""
        parsed = [parse_rule(doc, self._next_id + index, now) for index, doc in enumerate(docs)]
        self._next_id += len(parsed)
        self._rules.extend(parsed)
        return parsed

    def take(self, call: Call, now: float) -> Hit | None:
        """The first live rule matching `call`, with its count spent; None when no fault applies."""
        self._rules = [rule for rule in self._rules if rule.live(now)]
        for rule in self._rules:
            if rule.matches(call):
                rule.hits += 1
                if rule.count is not None:
                    rule.count -= 1
                return Hit(rule, self._released)
        return None

    def rules(self, now: float) -> list[FaultRule]:
        self._rules = [rule for rule in self._rules if rule.live(now)]
        return list(self._rules)

    def clear(self) -> int:
        """Drop every rule and let every hanging connection go."""
        dropped = len(self._rules)
        self._rules = []
        self.release_hangs()
        return dropped

    def release_hangs(self) -> None:
        self._released.set()
        self._released = threading.Event()
