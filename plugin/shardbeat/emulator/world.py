"""Everything the emulated services know, behind one lock: catalogs and group states, the server
clock, fault rules, the heartbeat log, the CLS rate limiter and the identity side (instance roles,
STS, the temporary keys issued: identity.py).

The clock: `wall_now()` is wall time plus an adjustable skew (what Date headers and signature
windows use); `mono_now()` is monotonic time plus an adjustable advance (what group timeouts,
fault durations and the rate limiter use). Tests jump group timeouts with the advance instead of
sleeping; the underlying clocks are injectable too.
"""

from __future__ import annotations

import collections
import functools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shardbeat.emulator.call import Call
from shardbeat.emulator.faults import FaultBook
from shardbeat.emulator.fixtures import Fixtures
from shardbeat.emulator.identity import Identity
from shardbeat.emulator.state import GroupState, K

MAX_RECEIPTS = 100_000  # the log is for tests; a long-running emulator keeps the newest ones

ClsKey = tuple[str, int]  # (TopicID, partition)


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    value: str | int  # SLS cursor, CLS offset
    update_time: int  # microseconds since the epoch
    consumer: str


@dataclass(slots=True)
class SlsGroup:
    timeout: int
    order: bool
    state: GroupState[int]
    checkpoints: dict[int, StoredCheckpoint] = field(default_factory=dict)


@dataclass(slots=True)
class SlsLogstore:
    shards: tuple[int, ...]
    groups: dict[str, SlsGroup] = field(default_factory=dict)

    def new_group(self, timeout: int, order: bool) -> SlsGroup:
        return SlsGroup(timeout, order, GroupState(self.shards, timeout, register_unknown=False))


@dataclass(slots=True)
class ClsGroup:
    timeout: int
    topics: tuple[str, ...]
    state: GroupState[ClsKey]
    checkpoints: dict[ClsKey, StoredCheckpoint] = field(default_factory=dict)


@dataclass(slots=True)
class ClsLogset:
    topics: dict[str, tuple[int, ...]]
    groups: dict[str, ClsGroup] = field(default_factory=dict)

    def keys(self, topics: tuple[str, ...]) -> list[ClsKey]:
        """Every partition of `topics`: the shards a group over those topics balances."""
        return [(topic, partition) for topic in topics for partition in self.topics[topic]]

    def new_group(self, timeout: int, topics: tuple[str, ...]) -> ClsGroup:
        # Nothing documents NotExistConsumer for CLS: an unknown consumer is simply registered.
        state = GroupState(self.keys(topics), timeout, register_unknown=True)
        return ClsGroup(timeout, topics, state)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One heartbeat as the server saw it, for tests to check ownership against."""

    seq: int
    wall: float
    mono: float
    call: Call
    status: int  # HTTP status answered (CLS errors are 200 with an error code); 0 when not answered
    error: str | None  # error code, if any
    assigned: dict[str, list[int]] | None  # the assignment answered, when the heartbeat succeeded
    # commits: each shard's owner when the server handled it (None: nobody), {topic: {"<shard>": owner}}
    owners: dict[str, dict[str, str | None]] | None = None

    def to_json(self) -> dict[str, Any]:
        call = self.call
        return {
            "seq": self.seq,
            "wall": self.wall,
            "mono": self.mono,
            "service": call.service,
            "scope": call.scope,
            "group": call.group,
            "consumer": call.consumer,
            "held": call.held,
            "assigned": self.assigned,
            "status": self.status,
            "error": self.error,
            "fault": call.fault,
            "action": call.action,
            "checkpoints": call.checkpoints,
            "owners": self.owners,
        }


class RateLimiter:
    """At most `limit` events in any sliding window of `window` seconds."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self._times: collections.deque[float] = collections.deque()

    def allow(self, now: float) -> bool:
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True


class World:
    def __init__(
        self,
        fixtures: Fixtures,
        *,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fixtures = fixtures
        self.lock = threading.RLock()
        self._wall = wall
        self._mono = mono
        self.skew = 0.0
        self.advance = 0.0
        self.faults = FaultBook()
        self.identity = Identity()
        self.projects: dict[str, dict[str, SlsLogstore]] = {}
        self.logsets: dict[str, ClsLogset] = {}
        self.cls_heartbeat_rate = RateLimiter(fixtures.cls_rate_limit)
        self.cls_offsets_rate = RateLimiter(fixtures.cls_rate_limit)  # Describe/CommitConsumerOffsets
        self.log_origin = 0.0  # wall time of position 0 in every shard (set by reset)
        self._receipts: collections.deque[Receipt] = collections.deque(maxlen=MAX_RECEIPTS)
        self._next_seq = 0
        self.reset()

    # -- clock

    def wall_now(self) -> float:
        return self._wall() + self.skew

    def mono_now(self) -> float:
        return self._mono() + self.advance

    def clock_json(self) -> dict[str, float]:
        return {"wall": self.wall_now(), "mono": self.mono_now(), "skew": self.skew, "advance": self.advance}

    # -- lifecycle

    def reset(self) -> None:
        """Back to the fixtures: catalogs, groups (no consumers), clock offsets, faults, log, rate."""
        with self.lock:
            self.skew = 0.0
            self.advance = 0.0
            self.faults.clear()
            self.identity = Identity()
            self._receipts.clear()
            self.cls_heartbeat_rate = RateLimiter(self.fixtures.cls_rate_limit)
            self.cls_offsets_rate = RateLimiter(self.fixtures.cls_rate_limit)
            self.log_origin = self.wall_now()
            self.projects = {}
            for project, logstores in self.fixtures.projects.items():
                live = self.projects[project] = {}
                for name, logstore in logstores.items():
                    store = live[name] = SlsLogstore(logstore.shards)
                    for group, config in logstore.groups.items():
                        store.groups[group] = store.new_group(config.timeout, config.order)
            self.logsets = {}
            for logset_id, logset in self.fixtures.logsets.items():
                topics = self.logsets[logset_id] = ClsLogset(dict(logset.topics))
                for group, cls_config in logset.groups.items():
                    topics.groups[group] = topics.new_group(cls_config.timeout, cls_config.topics)

    # -- the shards' data, as far as positions go: one log group per second since reset

    def end_position(self) -> int:
        return max(0, int(self.wall_now() - self.log_origin))

    def position_at(self, unix_seconds: float) -> int:
        """The first position at or after `unix_seconds` (begin before reset, end after now)."""
        return min(max(0, math.ceil(unix_seconds - self.log_origin)), self.end_position())

    # -- heartbeat log

    def record(
        self,
        call: Call,
        status: int,
        *,
        error: str | None = None,
        assigned: dict[str, list[int]] | None = None,
        owners: dict[str, dict[str, str | None]] | None = None,
    ) -> None:
        with self.lock:
            receipt = Receipt(
                self._next_seq, self.wall_now(), self.mono_now(), call, status, error, assigned, owners
            )
            self._next_seq += 1
            self._receipts.append(receipt)

    def receipts(self, since: int = 0) -> tuple[list[Receipt], int]:
        """Receipts with seq >= since, and the seq the next receipt will get."""
        with self.lock:
            return [r for r in self._receipts if r.seq >= since], self._next_seq

    # -- admin view

    def state_json(self) -> dict[str, Any]:
        """Every group: consumers with the age of their last heartbeat, shard states."""
        with self.lock:
            now = self.mono_now()
            groups: list[dict[str, Any]] = []
            for project, logstores in sorted(self.projects.items()):
                for logstore, store in sorted(logstores.items()):
                    for name, group in sorted(store.groups.items()):
                        head = {"service": "sls", "scope": f"{project}/{logstore}", "group": name}
                        sls_extra = {"timeout": group.timeout, "order": group.order}
                        shown = _group_json(group.state, now, functools.partial(_in_logstore, logstore))
                        groups.append({**head, **sls_extra, **shown})
            for logset_id, logset in sorted(self.logsets.items()):
                for name, cls_group in sorted(logset.groups.items()):
                    head = {"service": "cls", "scope": logset_id, "group": name}
                    extra: dict[str, Any] = {"timeout": cls_group.timeout, "topics": list(cls_group.topics)}
                    groups.append({**head, **extra, **_group_json(cls_group.state, now, _as_is)})
            return {"clock": self.clock_json(), "groups": groups}


def _in_logstore(logstore: str, shard: int) -> ClsKey:
    return logstore, shard


def _as_is(key: ClsKey) -> ClsKey:
    return key


def _group_json(state: GroupState[K], now: float, split: Callable[[K], ClsKey]) -> dict[str, Any]:
    """A group's consumers and shards, every shard named (topic, id)."""
    state.expire(now)
    consumers = []
    for consumer, last in state.consumers().items():
        assigned: dict[str, list[int]] = {}
        for topic, shard in map(split, state.assigned(consumer)):
            assigned.setdefault(topic, []).append(shard)
        consumers.append({"name": consumer, "last_heartbeat_age": now - last, "assigned": assigned})
    shards = []
    for key, st in state.shards().items():
        topic, shard = split(key)
        shards.append({"topic": topic, "shard": shard, "state": st.name, "owner": st.owner, "next": st.next})
    return {"consumers": consumers, "shards": shards}
