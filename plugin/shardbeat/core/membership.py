"""The membership engine: what this consumer holds, what it is releasing, and what changed.

Provider-neutral and pure. The runner feeds it heartbeat outcomes and the time; it answers with
events (the facts that become records) and with the claim to put in the next heartbeat.

- assigned:  what the server's last answer gave us, while the lease lasts.
- releasing: shards the server moved away while we were healthy (revoked). We keep listing them in
             heartbeats until downstream has let go (`release`), so the server can finish the transfer
             without two owners.
- lost:      lease ran out or the server forgot us: everything is dropped at once, and the next claim
             is empty so the server registers us afresh instead of answering NotExistConsumer again.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardbeat.core import shards
from shardbeat.core.lease import Lease
from shardbeat.core.shards import ShardMap


@dataclass(frozen=True, slots=True)
class AssignmentChanged:
    epoch: int
    assigned: ShardMap
    added: ShardMap
    revoked: ShardMap
    lease_expires: float  # monotonic


@dataclass(frozen=True, slots=True)
class LeaseRenewed:
    epoch: int
    lease_expires: float  # monotonic


@dataclass(frozen=True, slots=True)
class Lost:
    epoch: int
    lost: ShardMap
    reason: str


Event = AssignmentChanged | LeaseRenewed | Lost

LEASE_EXPIRED = "lease_expired"
CONSUMER_UNKNOWN = "consumer_unknown"
STOPPED = "stopped"


class Membership:
    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.assigned: ShardMap = shards.EMPTY
        self.releasing: ShardMap = shards.EMPTY
        self.epoch = 0
        # False until a heartbeat succeeds, and again after a loss: the next success is then
        # announced with a full `assignment` record even when nothing changed.
        self.joined = False

    def claim(self) -> ShardMap:
        """What the next heartbeat reports as held: assigned plus still-releasing; empty after a loss."""
        if not self.releasing:  # the usual case; maps are never changed in place, so it can be shared
            return self.assigned
        return shards.union(self.assigned, self.releasing)

    def on_success(self, assigned: ShardMap, sent_at: float, now: float) -> list[Event]:
        """Apply a successful answer to a heartbeat sent at `sent_at`.

        A lease that ran out before this answer is reported lost first, even if the answer would renew
        it: downstream has been told the old deadline and must hear that it passed. An answer so late
        that the lease it grants has already run out is ignored: acting on it would mean acting past
        the server's deadline.
        """
        events: list[Event] = []
        lost = self.expire(now)
        if lost is not None:
            events.append(lost)
        if self.lease.deadline_for(sent_at) <= now:
            return events
        if self.joined and not self.releasing and assigned == self.assigned:
            # The steady state (nothing added, revoked or releasing): what the general case below
            # comes to, without building the maps that would all be empty.
            events.append(LeaseRenewed(self.epoch, self.lease.renew(sent_at)))
            return events
        assigned = shards.shard_map(assigned)
        added = shards.minus(assigned, self.assigned)
        revoked = shards.minus(self.assigned, assigned)
        # A releasing shard the server hands back (its transfer target died) is ours again: it leaves
        # `releasing` and counts as added, since downstream had stopped acting on it.
        self.releasing = shards.minus(shards.union(self.releasing, revoked), assigned)
        self.assigned = assigned
        expires = self.lease.renew(sent_at)
        if added or revoked or not self.joined:
            self.joined = True
            self.epoch += 1
            events.append(AssignmentChanged(self.epoch, assigned, added, revoked, expires))
        else:
            events.append(LeaseRenewed(self.epoch, expires))
        return events

    def release(self, released: ShardMap) -> None:
        """Downstream has let go of these revoked shards: stop listing them."""
        self.releasing = shards.minus(self.releasing, released)

    def expire(self, now: float) -> Lost | None:
        """The watchdog's question: has the lease run out? If so, drop everything."""
        if not self.lease.expired(now):
            return None
        return self.drop(LEASE_EXPIRED)

    def drop(self, reason: str) -> Lost | None:
        """Forget everything now (lease expiry, the server forgot us, or a stop).

        Returns None when there was no membership to lose (never joined, or already dropped).
        """
        if not self.joined and not self.releasing:
            self.lease.clear()
            return None
        lost = self.claim()
        self.assigned = shards.EMPTY
        self.releasing = shards.EMPTY
        self.lease.clear()
        self.joined = False
        self.epoch += 1
        return Lost(self.epoch, lost, reason)
