"""The server side of one consumer group: who is alive, and which shard belongs to whom.

Models what the reference documents for SLS (and infers for CLS, whose consumer is a port of it):

- a shard is `not_alloc`, `already_alloc(owner)` or `transfer(owner -> next)`;
- live consumers own shard counts within 1 of each other; only the excess moves (sticky);
- a moving shard first becomes `transfer(owner -> next)`: the owner's answers stop listing it, and it
  reaches `next` only once the owner's heartbeat stops listing it (released). If `next` dies first,
  the shard stays with the owner;
- a consumer with no heartbeat for `timeout` seconds is removed; its shards go back to `not_alloc`;
- leaving a shard out of a heartbeat releases nothing unless that shard is being transferred;
- an answer lists the consumer's shards in `already_alloc`.

Pure and deterministic: no clock reads (every call takes `now`, monotonic seconds), no I/O, and every
choice is made in sorted order so that a test can predict it. Generic over the shard key: int shard
ids for SLS, (TopicID, partition) pairs for CLS.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

NOT_ALLOC = "not_alloc"
ALREADY_ALLOC = "already_alloc"
TRANSFER = "transfer"


class _SortableKey(Hashable, Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


K = TypeVar("K", bound=_SortableKey)


class ConsumerUnknown(Exception):
    """A heartbeat claiming shards from a consumer the group does not know (SLS: NotExistConsumerWithBody)."""

    def __init__(self, consumer: str) -> None:
        super().__init__(f"consumer {consumer!r} is not a member of the group")
        self.consumer = consumer


@dataclass(frozen=True, slots=True)
class ShardState:
    owner: str | None = None  # None: not_alloc
    next: str | None = None  # set: transfer(owner -> next)

    @property
    def name(self) -> str:
        if self.owner is None:
            return NOT_ALLOC
        return ALREADY_ALLOC if self.next is None else TRANSFER

    @property
    def destination(self) -> str | None:
        """Who will own the shard once pending transfers complete."""
        return self.next if self.next is not None else self.owner


_FREE = ShardState()


class GroupState(Generic[K]):
    """Assignment state of one consumer group over a fixed (but replaceable) set of shards.

    `register_unknown`: what a heartbeat with a non-empty claim from an unknown consumer does.
    False (SLS) raises ConsumerUnknown, and only an empty claim (re-)registers; True (CLS, where
    nothing documents such an error) registers the consumer.
    """

    def __init__(self, shards: Iterable[K], timeout: float, *, register_unknown: bool) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.timeout = float(timeout)
        self.register_unknown = register_unknown
        self._shards: dict[K, ShardState] = dict.fromkeys(sorted(set(shards)), _FREE)
        self._last_beat: dict[str, float] = {}  # live consumer -> monotonic time of its last heartbeat

    # -- the two things that move state

    def heartbeat(self, consumer: str, held: Iterable[K], now: float) -> list[K]:
        """Process one heartbeat: `held` is what the consumer says it holds. Returns its assignment."""
        claimed = {key for key in held if key in self._shards}  # unknown shard ids are ignored
        gone = self._silent(now)
        self._remove(gone)  # one rebalance below covers removals and this heartbeat
        if consumer not in self._last_beat and claimed and not self.register_unknown:
            if gone:
                self._rebalance({})
            raise ConsumerUnknown(consumer)
        self._last_beat[consumer] = now
        for key, state in self._shards.items():
            # The owner no longer lists a shard it was asked to give up: the transfer completes.
            if state.owner == consumer and state.next is not None and key not in claimed:
                self._shards[key] = ShardState(owner=state.next)
        claimants = {key: consumer for key in sorted(claimed) if self._shards[key].owner is None}
        self._rebalance(claimants)
        return self.assigned(consumer)

    def expire(self, now: float) -> list[str]:
        """Remove consumers silent for `timeout` seconds or more; returns their names, sorted."""
        gone = self._silent(now)
        if gone:
            self._remove(gone)
            self._rebalance({})
        return gone

    # -- configuration changes

    def set_timeout(self, timeout: float, now: float) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.timeout = float(timeout)
        self.expire(now)

    def set_shards(self, shards: Iterable[K], now: float) -> None:
        """Replace the shard set (e.g. the group's topics changed): vanished shards are forgotten,
        new ones start `not_alloc`, and the group is rebalanced."""
        wanted = sorted(set(shards))
        self._shards = {key: self._shards.get(key, _FREE) for key in wanted}
        if not self.expire(now):
            self._rebalance({})

    # -- views

    def assigned(self, consumer: str) -> list[K]:
        """What an answer to `consumer` lists: its shards in already_alloc, sorted."""
        return [k for k, s in self._shards.items() if s.owner == consumer and s.next is None]

    def consumers(self) -> dict[str, float]:
        """Live consumers -> monotonic time of their last heartbeat (call expire(now) first)."""
        return dict(sorted(self._last_beat.items()))

    def shards(self) -> Mapping[K, ShardState]:
        return dict(self._shards)

    # -- internals

    def _silent(self, now: float) -> list[str]:
        return sorted(c for c, last in self._last_beat.items() if now - last >= self.timeout)

    def _remove(self, gone: list[str]) -> None:
        """Forget consumers; their shards go free (rebalancing is the caller's business)."""
        for key, state in self._shards.items():
            if state.owner in gone:
                self._shards[key] = _FREE
            elif state.next in gone:
                self._shards[key] = ShardState(owner=state.owner)  # next died first: stays with owner
        for consumer in gone:
            del self._last_beat[consumer]

    def _rebalance(self, claimants: Mapping[K, str]) -> None:
        """Move as few shards as possible so that live consumers' counts differ by at most 1.

        Counts are taken after pending transfers (a shard counts for its destination). The consumers
        already carrying the most get the larger quotas; an overloaded consumer keeps its lowest
        shards, settled ones first, and gives up the rest. Freed and unallocated shards go, in order,
        to their current owner if it has room (cancelling a transfer), else to the consumer that
        claimed it in this heartbeat if it has room, else to the least loaded consumer (by name on
        ties). `claimants` maps unallocated shards to the consumer whose heartbeat lists them.
        """
        live = sorted(self._last_beat)
        if not live:
            return
        load: dict[str, list[K]] = {consumer: [] for consumer in live}
        pool: list[K] = []
        for key, state in self._shards.items():
            destination = state.destination
            if destination is None:
                pool.append(key)
            else:
                load[destination].append(key)
        base, extra = divmod(len(self._shards), len(live))
        ranked = sorted(live, key=lambda c: (-len(load[c]), c))
        quota = {consumer: base + (1 if rank < extra else 0) for rank, consumer in enumerate(ranked)}
        for consumer in live:
            mine = load[consumer]
            if len(mine) > quota[consumer]:
                settled = [k for k in mine if self._shards[k].next is None]
                incoming = [k for k in mine if self._shards[k].next is not None]
                ordered = settled + incoming
                load[consumer] = ordered[: quota[consumer]]
                pool.extend(ordered[quota[consumer] :])
        for key in sorted(pool):
            owner = self._shards[key].owner
            claimant = claimants.get(key)
            if owner is not None and len(load[owner]) < quota[owner]:
                chosen = owner
            elif claimant is not None and len(load[claimant]) < quota[claimant]:
                chosen = claimant
            else:
                chosen = min((c for c in live if len(load[c]) < quota[c]), key=lambda c: (len(load[c]), c))
            load[chosen].append(key)
        for consumer, keys in load.items():
            for key in keys:
                owner = self._shards[key].owner
                if owner is None or owner == consumer:
                    self._shards[key] = ShardState(owner=consumer)
                else:
                    self._shards[key] = ShardState(owner=owner, next=consumer)
