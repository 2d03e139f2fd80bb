"""A group's checkpoint rules (part of GroupDriver): start positions for assignments, lease-fenced
commits, flush before release and on stop.

Fencing: a value is accepted, and later sent, only for a shard this node holds under a valid lease
(assigned or releasing) at that very instant; the lease is checked again right before each request,
and the request's deadline never passes the lease. The watchdog runs first each time, so a node that
was frozen past its lease writes `lost` before anything else and sends nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from shardbeat.core import checkpoints as cp
from shardbeat.core import records, shards
from shardbeat.core.calls import Answer, CommitFailures, Step, send_commit
from shardbeat.core.checkpoints import RETRY, Checkpoint, CommitBook, Position, ShardKey, Start
from shardbeat.core.records import Instant
from shardbeat.core.schedule import call_budget
from shardbeat.core.shards import ShardMap
from shardbeat.core.wire import ProviderError

if TYPE_CHECKING:
    from shardbeat.core.driver import GroupDriver

log = logging.getLogger("shardbeat.checkpoints")

START_FETCH_SECONDS = 2.0  # longest an assignment record waits for start positions
NOT_OWNER = "NotOwner"
CHECKPOINTS_OFF = "CheckpointsOff"
STALE_EPOCH = "StaleEpoch"
INVALID_CHECKPOINT = "InvalidCheckpoint"
MAX_SHOWN = 600  # characters of shards or values quoted in one message (a commit may name thousands)


class CheckpointSettings(Protocol):
    """`checkpoints` of a group's config (config/model.py CheckpointConfig)."""

    @property
    def start(self) -> Start: ...
    @property
    def commit_interval(self) -> float: ...


@dataclass(eq=False)
class GroupCheckpoints:
    """One group's checkpoint state."""

    config: CheckpointSettings
    book: CommitBook
    missing: set[ShardKey] = field(default_factory=set)  # assigned shards whose start is still owed
    sending: bool = False  # a commit call is out (never two per group)
    added_at: dict[ShardKey, int] = field(default_factory=dict)  # the epoch each held shard was added in
    committed: int = 0  # values the server accepted (the `status` record's counters)
    dropped: int = 0  # values given up: refused, out of attempts, or their shard lost before sending
    start_failure: ProviderError | None = None  # the last start read failed: reported after the records
    stop_sends: int = 0  # commit calls made by a stop's flush

    @classmethod
    def create(cls, config: CheckpointSettings) -> GroupCheckpoints:
        return cls(config, CommitBook(config.commit_interval))


def _clipped(text: str, count: int) -> str:
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({count} shards in all)"


def _shown(keys: Mapping[ShardKey, object] | set[ShardKey]) -> str:
    return _clipped(json.dumps(shards.to_json(cp.map_of(keys)), separators=(",", ":")), len(keys))


def _values(values: Mapping[ShardKey, Checkpoint]) -> str:
    """Values as JSON in a message: the same shape as the `commit` op's `checkpoints`."""
    return _clipped(json.dumps(cp.values_json(values), separators=(",", ":")), len(values))


class CheckpointRules:
    """Mixed into GroupDriver (core/driver.py), whose state these rules read and write."""

    if not TYPE_CHECKING:  # no dict per driver (GroupDriver lists the slots); mypy checks the driver's
        __slots__ = ()

    def _me(self) -> GroupDriver:
        return self  # type: ignore[return-value]

    def group_error(
        self, at: Instant, source: str, code: str, message: str, failure: ProviderError | None = None
    ) -> None:
        me = self._me()
        # A refused control op is logged by the shell, which limits how many are reported (a client
        # looping on refused commits must not flood the log or the record stream).
        level = logging.DEBUG if source == "control" else logging.WARNING
        log.log(level, "%s: %s: %s", me.config.label, code, message)
        me.emit(
            records.error(
                me.identity,
                at,
                code,
                message,
                failure.status if failure else None,
                failure.request_id if failure else None,
                None,
                source,
            )
        )

    # -- commits: when ----------------------------------------------------------------------------

    def commit_due(self) -> float | None:
        group = self._me().checkpoints
        if group is None or group.sending or self._me().stopping:
            return None
        return group.book.due_at()

    def poll_commit(self, at: Instant) -> None:
        group = self._me().checkpoints
        if group is None or group.sending or self._me().stopping:
            return
        due = group.book.due_at()
        if due is not None and due <= at.mono:
            group.sending = True
            self._me()._calls.append(self._commit_call(at))

    # -- start positions (around applying a heartbeat answer) -------------------------------------

    def starts_to_fetch(self, assigned: ShardMap, received: float) -> ShardMap:
        """Shards this answer will add, plus assigned ones whose start is still owed."""
        me = self._me()
        group = me.checkpoints
        if group is None:
            return shards.EMPTY
        membership = me.membership
        before = membership.assigned if membership.lease.valid(received) else shards.EMPTY
        owed = cp.map_of(key for key in group.missing if cp.is_held(key, assigned))
        return shards.union(shards.minus(assigned, before), owed)

    def start_deadline(self, sent_at: float, received: float) -> float:
        """Reading starts takes a short budget that never passes the lease."""
        me = self._me()
        lease = me.membership.lease
        deadline = min(received + min(START_FETCH_SECONDS, 0.5 * me.interval), lease.deadline_for(sent_at))
        if lease.valid(received) and lease.expires_at is not None:
            deadline = min(deadline, lease.expires_at)
        return deadline

    def start_for(
        self, added: ShardMap, epoch: int, positions: Mapping[ShardKey, Position]
    ) -> dict[ShardKey, Position] | None:
        """The `start` of an assignment record; shards without a position are owed."""
        group = self._me().checkpoints
        if group is None:
            return None
        start: dict[ShardKey, Position] = {}
        for key in cp.keys_of(added):
            group.added_at[key] = epoch
            if key in positions:
                start[key] = positions[key]
                group.missing.discard(key)
            else:
                group.missing.add(key)
        return start

    def owed_starts(self, positions: Mapping[ShardKey, Position], at: Instant) -> None:
        """A `start` record for owed shards fetched now and still assigned."""
        me = self._me()
        group = me.checkpoints
        if group is None:
            return
        failure, group.start_failure = group.start_failure, None
        assigned = me.membership.assigned
        group.missing = {key for key in group.missing if cp.is_held(key, assigned)}
        if failure is not None and group.missing - set(positions):
            self.group_error(
                at,
                "start",
                failure.code,
                f"could not read the start of {_shown(group.missing - set(positions))} ({failure.message}); "
                "they come in a later `start` record: do not read them before",
                failure,
            )
        found = {key: positions[key] for key in group.missing if key in positions}
        if found:
            group.missing.difference_update(found)
            me.emit(records.start(me.identity, at, me.membership.epoch, found))

    def checkpoints_lost(self, at: Instant) -> None:
        """Everything was lost: pending values can never be sent, owed starts are void."""
        group = self._me().checkpoints
        if group is None:
            return
        group.missing.clear()
        group.added_at.clear()
        dropped = group.book.drop(shards.EMPTY)
        group.dropped += len(dropped)
        if dropped:
            self.group_error(
                at, "commit", NOT_OWNER,
                f"shards lost before their checkpoints were sent; dropped {_values(dropped)}",
            )  # fmt: skip

    # -- offering values (the `commit` op) ----------------------------------------------------------

    def offer(self, values: Mapping[ShardKey, Checkpoint], at: Instant, epoch: int | None = None) -> int:
        """Queue the values this node may commit; returns how many were queued (refusals are reported).

        With `epoch` (the epoch downstream made the values under), values of shards added after it
        are refused: they predate the current hold of the shard (a loss and a re-join in between).
        """
        me = self._me()
        group = me.checkpoints
        if group is None:
            self.group_error(
                at, "control", CHECKPOINTS_OFF,
                "this group has no `checkpoints` in its config: nothing committed",
            )  # fmt: skip
            return 0
        held = me.held_now(at)
        mine, others = cp.split_held(values, held)
        if others:
            self.group_error(
                at, "control", NOT_OWNER,
                f"not held under a valid lease, nothing sent for {_values(others)}",
            )  # fmt: skip
        done = {key: value for key, value in mine.items() if group.book.let_go(key)}
        if done:
            # Released, held back only for its last value: a newer one would hold it back again,
            # and a client committing faster than the service answers would keep it claimed forever.
            self.group_error(
                at, "control", NOT_OWNER,
                f"released (only the value pending then is committed), nothing taken for {_values(done)}",
            )  # fmt: skip
            mine = {key: value for key, value in mine.items() if key not in done}
        if epoch is not None and epoch > me.membership.epoch and mine:
            # No record of this process carried that epoch: the values were made under an earlier
            # run's records (its epochs count from 1 again) and may predate a loss; never trust them.
            self.group_error(
                at, "control", STALE_EPOCH,
                f"epoch {epoch} is newer than this group's latest ({me.membership.epoch}): values made "
                f"under an earlier run of shardbeat? nothing sent for {_values(mine)}",
            )  # fmt: skip
            mine = {}
        if epoch is not None:
            stale = {key: value for key, value in mine.items() if group.added_at.get(key, 0) > epoch}
            if stale:
                self.group_error(
                    at, "control", STALE_EPOCH,
                    f"added again after epoch {epoch}, nothing sent for {_values(stale)}",
                )  # fmt: skip
                mine = {key: value for key, value in mine.items() if key not in stale}
        valid: dict[ShardKey, Checkpoint] = {}
        for key, value in mine.items():
            problem = me.wire.checkpoint_problem(value)
            if problem is None:
                valid[key] = value
            else:
                self.group_error(at, "control", INVALID_CHECKPOINT, f"{_shown({key})}: {problem}")
        group.book.offer(valid, at.mono)
        return len(valid)

    # -- release after flush ------------------------------------------------------------------------

    def release(self, released: ShardMap, at: Instant) -> ShardMap:
        """Stop claiming these revoked shards, once any checkpoint pending for them is committed.
        Returns the ones released now (the rest follow once their values are committed)."""
        me = self._me()
        group = me.checkpoints
        if group is None or me.stopping:
            return me.release_now(released, at)
        mine = me.releasing_among(released)
        waiting = group.book.hold_release(mine)
        if waiting:
            log.info("%s: committing %s before releasing them", me.config.label, shards.to_json(waiting))
        return me.release_now(shards.minus(mine, waiting), at)

    # -- sending ------------------------------------------------------------------------------------

    def _still_held(self, key: ShardKey, at: Instant) -> bool:
        return cp.is_held(key, self._me().held_now(at))

    def _commit_call(self, at: Instant, cap: float | None = None) -> Generator[Step, Answer, None]:
        me = self._me()
        group = me.checkpoints
        assert group is not None
        now = at.mono
        held = me.held_now(at)
        batch, lost = group.book.take(held, now)
        group.dropped += len(lost)
        if lost:
            self.group_error(
                at, "commit", NOT_OWNER,
                f"shards no longer held when the commit was due; dropped {_values(lost)}",
            )  # fmt: skip
        lease = me.membership.lease
        deadline = now + call_budget(me.interval, lease.remaining(now) if lease.valid(now) else None)
        if cap is not None:
            deadline = min(deadline, cap)
        if batch is None:
            self._commit_settled({}, [], at)
            return
        try:
            credentials = me.credentials.current()
        except ProviderError as exc:  # no key in hand: a passing fault, the values wait
            self._commit_settled(dict.fromkeys(batch.values, RETRY), [(dict(batch.values), exc)], at)
            return
        outcomes, failures, end = yield from send_commit(
            me, credentials, batch.values, self._still_held, at, deadline
        )
        self._commit_settled(outcomes, failures, end)

    def _commit_settled(
        self, outcomes: Mapping[ShardKey, str], failures: CommitFailures, at: Instant
    ) -> None:
        me = self._me()
        group = me.checkpoints
        assert group is not None
        committed, dropped = group.book.settle(outcomes, at.mono)
        group.committed += len(committed)
        group.dropped += len(dropped)
        group.sending = False
        if me.records_closed:
            return  # a call that outlived the stop: `stopped` was the last record
        if committed:
            me.emit(records.committed(me.identity, at, me.membership.epoch, committed))
        for values, failure in failures:
            gone = {key: value for key, value in values.items() if key in dropped}
            fate = f"dropped {_values(gone)}" if gone else f"will retry {_values(values)}"
            self.group_error(at, "commit", failure.code, f"{failure.message}; {fate}", failure)
        me.release_now(group.book.releasable(), at)

    def flush_for_stop(self, at: Instant, deadline: float) -> bool:
        """A clean stop: send what is pending for held shards now (a commit call before `deadline`).
        True when a call was started or one is still out."""
        me = self._me()
        group = me.checkpoints
        if group is None:
            return False
        if group.sending:
            return True
        if not group.book.pending or group.stop_sends >= cp.MAX_ATTEMPTS or at.mono >= deadline:
            return False
        group.book.flush()
        group.sending = True
        group.stop_sends += 1
        me._calls.append(self._commit_call(at, deadline))
        return True


def commit_across(
    drivers: Sequence[GroupDriver], values: Mapping[ShardKey, Checkpoint], epoch: int | None, at: Instant
) -> int:
    """The `commit` op over several matching groups: each takes the values of the shards it holds;
    a shard none of them holds is refused once. Returns how many values were queued."""
    if len(drivers) == 1:
        return drivers[0].offer(values, at, epoch)
    queued = 0
    unclaimed = dict(values)
    for driver in drivers:
        held = driver.held_now(at) if driver.checkpoints is not None else shards.EMPTY
        mine, _ = cp.split_held(values, held)
        if mine:
            queued += driver.offer(mine, at, epoch)
            for key in mine:
                unclaimed.pop(key, None)
    if unclaimed:
        drivers[0].group_error(
            at, "control", NOT_OWNER,
            f"no matching group holds these under a valid lease: {_values(unclaimed)}",
        )  # fmt: skip
    return queued


__all__ = ["CheckpointRules", "GroupCheckpoints", "commit_across"]
