"""A group's release rules (part of GroupDriver): revoked shards stay claimed until downstream has
let go (the revoke written, or its ack within a grace), then the server hears at once; on-demand beats.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shardbeat.core import shards
from shardbeat.core.on_demand import OnDemandBudget, on_demand_at
from shardbeat.core.records import Instant
from shardbeat.core.shard_text import shard_text
from shardbeat.core.shards import ShardMap

if TYPE_CHECKING:
    from shardbeat.core.driver import GroupDriver
    from shardbeat.core.group_settings import Settings
    from shardbeat.core.membership import Membership

log = logging.getLogger("shardbeat.runner")


class ReleaseRules:
    """Mixed into GroupDriver (core/driver.py), whose state these rules read and write."""

    if not TYPE_CHECKING:  # no dict per driver (GroupDriver lists the slots); mypy checks the driver's
        __slots__ = ()

    # The driver's state these rules use (set by GroupDriver.__init__).
    config: Settings
    membership: Membership
    awaiting_ack: dict[tuple[str, int], float]
    bootstrapped: bool
    in_flight: bool
    beat_soon: bool
    on_demand: bool
    stopping: bool
    due_at: float
    last_sent: float | None
    on_demand_budget: OnDemandBudget | None  # the process's, once an on-demand beat was asked for
    interval: float
    timeout: float

    def _driver(self) -> GroupDriver:
        return self  # type: ignore[return-value]

    # -- release --------------------------------------------------------------------------------------

    def releasing_among(self, given: ShardMap) -> ShardMap:
        return {t: ids & given.get(t, frozenset()) for t, ids in self.membership.releasing.items()}

    def release_now(self, released: ShardMap, at: Instant) -> ShardMap:
        """Stop claiming these revoked shards and tell the server at once; returns those that were
        waiting to be released."""
        mine = self.releasing_among(released)
        if not shards.count(mine):
            return {}
        self.membership.release(mine)
        self._forget_acks(mine)
        log.info("%s: released %s (the server may hand them on)", self.config.label, shard_text(mine, False))
        if not self.stopping:
            self.beat_now(at.mono)
        return mine

    def beat_now(self, now: float) -> None:
        if self.in_flight:
            self.beat_soon = True
        else:
            self.due_at = min(self.due_at, now)

    def _await_ack(self, revoked: ShardMap, now: float) -> None:
        give_up = now + self.release_grace
        for topic, ids in revoked.items():
            for shard in ids:
                self.awaiting_ack[(topic, shard)] = give_up

    @property
    def release_grace(self) -> float:
        grace = self.config.release_grace
        return grace if grace is not None else self.timeout

    def _forget_acks(self, released: ShardMap) -> None:
        for topic, ids in released.items():
            for shard in ids:
                self.awaiting_ack.pop((topic, shard), None)

    def _ack_deadline(self, at: Instant) -> None:
        overdue: dict[str, set[int]] = {}
        for (topic, shard), give_up in self.awaiting_ack.items():
            if give_up <= at.mono:
                overdue.setdefault(topic, set()).add(shard)
        if not overdue:
            return
        released = shards.shard_map(overdue)
        log.warning(
            "%s: no `released` ack within %gs for %s; releasing anyway",
            self.config.label,
            self.release_grace,
            shard_text(released, False),
        )
        self._forget_acks(released)
        self._driver().release(released, at)

    def held(self, held: ShardMap, at: Instant) -> ShardMap:
        """Downstream says what it really holds: releasing shards it no longer holds are done."""
        return self._driver().release(shards.minus(self.membership.releasing, held), at)

    # -- on-demand beats ------------------------------------------------------------------------------

    def ask_beat(self, now: float, budget: OnDemandBudget | None) -> None:
        """An on-demand beat (control `heartbeat`, reload): coalesced and spaced (core/on_demand.py),
        within the process's budget. Before the group is bootstrapped it hurries the bootstrap's
        retry (a reload after a key was fixed must not wait out a slow backoff)."""
        if self.in_flight:
            if self.bootstrapped:  # (a bootstrap in flight is followed by a heartbeat at once anyway)
                self.on_demand = True  # one owed beat, however many were asked for
                self.on_demand_budget = budget or self.on_demand_budget
            return
        at = on_demand_at(now, self.last_sent, self.interval)
        budget = budget or self.on_demand_budget
        if budget is not None:
            at = budget.earliest(at)
        if at < self.due_at:  # else a beat is due by then anyway (an ask already queued, the grid)
            if budget is not None:
                at = budget.slot(at)
            self.due_at = at
