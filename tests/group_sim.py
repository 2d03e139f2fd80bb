"""A consumer group in simulation: membership engines driven the way the runner drives them (one call
in flight per node, call budgets, the pacer's retries, the watchdog before every outcome, release on
revoke), the emulator's server model (emulator/state.py, pure and clock-injected) on the other side,
and a network whose every call can be slow, lost either way, or (optionally) overtaken. Nodes can
be frozen. Each node keeps the records it would print, for tests/ownership.py to judge.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ownership
from shardbeat.core import records
from shardbeat.core.lease import Lease
from shardbeat.core.membership import CONSUMER_UNKNOWN, AssignmentChanged, Event, LeaseRenewed, Membership
from shardbeat.core.records import Identity, Instant
from shardbeat.core.schedule import Pacer, Retry, call_budget
from shardbeat.core.shards import ShardMap
from shardbeat.emulator.state import ConsumerUnknown, GroupState

T = "logstore"


def ids_of(shard_map: ShardMap) -> frozenset[int]:
    return shard_map.get(T, frozenset())


def m(ids: frozenset[int] | set[int]) -> dict[str, frozenset[int]]:
    return {T: frozenset(ids)} if ids else {}


SHARDS = 6
INTERVAL = 0.5
T0 = 1_800_000_000.0  # wall time of simulated second 0


@dataclass
class Call:
    sent: float
    claim: frozenset[int]
    deadline: float


@dataclass
class Node:
    name: str
    mem: Membership
    pacer: Pacer
    records: list[dict[str, Any]] = field(default_factory=list)
    call: Call | None = None
    frozen_until: float = 0.0
    generation: int = 0  # bumps when a call ends, so stale timers for it are ignored
    last_arrival: float = 0.0


@dataclass
class Network:
    """Per-call fate, drawn by hypothesis and consumed in order (then the network behaves)."""

    fates: list[tuple[float, float, bool, bool]]  # request delay, answer delay, request lost, answer lost
    # False: one node's requests reach the server in the order sent (late, lost or unanswered, but
    # never overtaking one another, as on one ordered path). True: a request given up on may still
    # be processed after a later one.
    reorder: bool = False
    used: int = 0
    calm_from: float = 0.0  # after this, every call goes through promptly

    def next(self, now: float) -> tuple[float, float, bool, bool]:
        if self.used < len(self.fates):
            self.used += 1
            self.calm_from = now + 2.5  # the last odd call is over by then (delays <= 1 s each way)
            return self.fates[self.used - 1]
        return (0.001, 0.001, False, False)


class Cluster:
    def __init__(self, n: int, timeout: float, margin: float, network: Network, rng: random.Random) -> None:
        self.timeout = timeout
        self.server: GroupState[int] = GroupState(range(SHARDS), timeout, register_unknown=False)
        self.network = network
        self.nodes = {
            f"n{i}": Node(f"n{i}", Membership(Lease(timeout, margin)), Pacer.create(INTERVAL, 0.0, rng))
            for i in range(n)
        }
        self.receipts: list[ownership.Receipt] = []
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.now = 0.0

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.queue, (when, next(self.seq), action))

    def on_node(self, node: Node, when: float, action: Callable[[], None]) -> None:
        """Something the node's process does at `when`, or when it thaws if it is frozen then."""

        def run() -> None:
            if self.now < node.frozen_until:
                self.at(node.frozen_until, run)
            else:
                action()

        self.at(when, run)

    def emit(self, node: Node, events: list[Event]) -> None:
        at = Instant(T0 + self.now, self.now)
        for event in events:
            node.records.append(records.from_event(Identity("sls", "g", node.name), event, at))
            if isinstance(event, AssignmentChanged) and event.revoked:
                # release: immediate -- once the revoke is out, stop listing those and beat now
                node.mem.release(event.revoked)
                self.beat_soon(node)
            if isinstance(event, (AssignmentChanged, LeaseRenewed)):
                self.on_node(node, event.lease_expires, lambda: self.watchdog(node))

    def watchdog(self, node: Node) -> None:
        lost = node.mem.expire(self.now)
        if lost is not None:
            self.emit(node, [lost])

    def beat_soon(self, node: Node) -> None:
        if node.call is None:
            self.on_node(node, self.now, lambda: self.beat(node))

    def beat(self, node: Node) -> None:
        if node.call is not None:
            return
        lease = node.mem.lease
        remaining = lease.remaining(self.now) if lease.valid(self.now) else None
        call = Call(self.now, ids_of(node.mem.claim()), self.now + call_budget(INTERVAL, remaining))
        node.call = call
        node.generation += 1
        generation = node.generation
        up, down, request_lost, answer_lost = self.network.next(self.now)
        if not request_lost:
            arrival = self.now + up
            if not self.network.reorder:
                arrival = max(arrival, node.last_arrival)
            node.last_arrival = max(node.last_arrival, arrival)
            self.at(arrival, lambda: self.arrive(node, call, down, answer_lost))
        self.on_node(node, call.deadline, lambda: self.give_up(node, generation))

    def arrive(self, node: Node, call: Call, down: float, answer_lost: bool) -> None:
        try:
            assigned: frozenset[int] | None = frozenset(
                self.server.heartbeat(node.name, call.claim, self.now)
            )
            self.receipts.append(ownership.Receipt(node.name, T0 + self.now, True))
        except ConsumerUnknown:
            assigned = None
            self.receipts.append(ownership.Receipt(node.name, T0 + self.now, False))
        if not answer_lost:
            self.on_node(node, self.now + down, lambda: self.answer(node, call, assigned))

    def answer(self, node: Node, call: Call, assigned: frozenset[int] | None) -> None:
        if node.call is not call or self.now > call.deadline:
            return  # the call was already given up (the transport's deadline)
        node.call = None
        self.watchdog(node)  # a lapse is reported before whatever this answer says
        if assigned is None:  # NotExistConsumerWithBody: drop everything, claim nothing, retry at once
            lost = node.mem.drop(CONSUMER_UNKNOWN)
            self.emit(node, [lost] if lost else [])
            self.next_beat(node, node.pacer.after_failure(self.now, Retry.REJOIN))
            return
        self.emit(node, node.mem.on_success(m(assigned), call.sent, self.now))
        self.next_beat(node, node.pacer.after_success(self.now))

    def give_up(self, node: Node, generation: int) -> None:
        if node.call is None or node.generation != generation:
            return
        node.call = None
        self.watchdog(node)
        self.next_beat(node, node.pacer.after_failure(self.now, Retry.FAST))

    def next_beat(self, node: Node, when: float) -> None:
        self.on_node(node, when, lambda: self.beat(node))

    def freeze(self, name: str, start: float, seconds: float) -> None:
        def begin() -> None:
            node = self.nodes[name]
            node.frozen_until = max(node.frozen_until, self.now + seconds)

        self.at(start, begin)

    def run(self, until: float) -> None:
        for node in self.nodes.values():
            self.on_node(node, 0.0, functools.partial(self.beat, node))
        while self.queue and self.queue[0][0] <= until:
            when, _, action = heapq.heappop(self.queue)
            self.now = max(self.now, when)
            action()
