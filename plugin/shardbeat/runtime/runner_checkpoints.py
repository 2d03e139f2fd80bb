"""The runner's checkpoint duties: start positions for assignments, fenced commits, flush on release
and on stop. A mixin of Runner, kept apart so the scheduler stays readable; it shares the runner's
lock (`_cond`), heap, work queue and writer, and follows its rules: no network I/O under the lock.

Fencing: a value is accepted, and later sent, only for a shard this node holds under a valid lease
(assigned or releasing) at that very instant; the lease is checked again right before each request,
and the request's deadline never passes the lease. The watchdog runs first each time, so a node
that was frozen past its lease writes `lost` before anything else and sends nothing.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shardbeat.core import checkpoints as cp
from shardbeat.core import records, shards
from shardbeat.core.checkpoints import Checkpoint, Position, ShardKey
from shardbeat.core.schedule import call_budget
from shardbeat.core.shards import ShardMap
from shardbeat.providers.base import HttpResponse, ProviderError
from shardbeat.runtime.checkpointing import (
    CHECKPOINTS_OFF,
    INVALID_CHECKPOINT,
    NOT_OWNER,
    STALE_EPOCH,
    START_FETCH_SECONDS,
    Caller,
    GroupCheckpoints,
    fetch_positions,
    send_commit,
)
from shardbeat.runtime.session import Session

if TYPE_CHECKING:
    from shardbeat.runtime.clock import Clock
    from shardbeat.runtime.output import RecordWriter
    from shardbeat.runtime.timeline import Timeline
    from shardbeat.runtime.transport import Transport

log = logging.getLogger("shardbeat.checkpoints")

COMMIT = 3  # timeline kind: a group's commit batch is due
STOP_COMMIT_SECONDS = 1.0  # a clean stop waits at most this long for the last commits


@dataclass(frozen=True, slots=True)
class CommitJob:
    """Work-queue item: send this group's due commit batch."""

    session: Session


MAX_SHOWN = 600  # characters of shards or values quoted in one message (a commit may name thousands)


def _clipped(text: str, count: int) -> str:
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({count} shards in all)"


def _shown(keys: Mapping[ShardKey, object] | set[ShardKey]) -> str:
    return _clipped(json.dumps(shards.to_json(cp.map_of(keys)), separators=(",", ":")), len(keys))


def _values(values: Mapping[ShardKey, Checkpoint]) -> str:
    """Values as JSON in a message: the same shape as the `commit` op's `checkpoints`."""
    return _clipped(json.dumps(cp.values_json(values), separators=(",", ":")), len(values))


class CheckpointOps:
    # Provided by Runner.
    _cond: threading.Condition
    _clock: Clock
    _transport: Transport
    _writer: RecordWriter
    _timeline: Timeline[Session]
    _work: queue.SimpleQueue[Session | CommitJob | None]
    _stopping: bool
    _records_closed: bool
    sessions: list[Session]

    def _watchdog(self, session: Session, now: float) -> None: ...

    def _release_now(self, session: Session, released: ShardMap) -> ShardMap:
        raise NotImplementedError  # the runner's

    def _observe_clock(self, session: Session, response: HttpResponse, sent_wall: float) -> None: ...

    def _caller(self, session: Session, deadline: float) -> Caller:
        return Caller(
            session.provider,
            self._transport,
            lambda: session.server_clock.now(self._clock.wall()),
            self._clock.wall,
            lambda response, sent_wall: self._observe_clock(session, response, sent_wall),
            deadline,
        )

    # -- helpers (caller holds the lock)

    def _held(self, session: Session, now: float) -> ShardMap:
        """Shards held under a valid lease right now (assigned or releasing); the watchdog runs first."""
        self._watchdog(session, now)
        membership = session.membership
        return membership.claim() if membership.lease.valid(now) else shards.EMPTY

    def _group_error(
        self, session: Session, source: str, code: str, message: str, failure: ProviderError | None = None
    ) -> None:
        log.warning("%s: %s: %s", session.config.label, code, message)
        self._writer.emit(
            records.error(
                session.identity,
                self._clock.instant(),
                code,
                message,
                failure.status if failure else None,
                failure.request_id if failure else None,
                None,
                source,
            )
        )

    def _schedule_commit(self, session: Session) -> None:
        group = session.checkpoints
        if group is None or group.sending:
            return
        due = group.book.due_at()
        if due is None:
            return
        at = max(due, self._clock.monotonic())
        if group.queued_at is not None and group.queued_at <= at:
            return  # the queued entry comes first (between sends the due time never moves later)
        group.version += 1
        group.queued_at = at
        if self._timeline.push(at, COMMIT, session, group.version):
            self._cond.notify()

    def _commit_due(self, session: Session, version: int) -> None:
        group = session.checkpoints
        if group is None or version != group.version:
            return
        group.queued_at = None
        if group.sending:
            return
        group.sending = True
        self._work.put(CommitJob(session))

    # -- start positions (the beat worker, around applying a heartbeat answer)

    def _starts_to_fetch(self, session: Session, assigned: ShardMap, received: float) -> ShardMap:
        """Shards this answer will add, plus assigned ones whose start is still owed (lock held)."""
        group = session.checkpoints
        if group is None:
            return shards.EMPTY
        membership = session.membership
        before = membership.assigned if membership.lease.valid(received) else shards.EMPTY
        owed = cp.map_of(key for key in group.missing if cp.is_held(key, assigned))
        return shards.union(shards.minus(assigned, before), owed)

    def _fetch_starts(
        self, session: Session, wanted: ShardMap, sent_at: float, received: float
    ) -> dict[ShardKey, Position]:
        """Read start positions (no lock held), within a short budget that never passes the lease."""
        group = session.checkpoints
        if group is None or not wanted:
            return {}
        membership = session.membership
        deadline = min(
            received + min(START_FETCH_SECONDS, 0.5 * session.interval),
            membership.lease.deadline_for(sent_at),
        )
        with self._cond:
            if membership.lease.valid(received) and membership.lease.expires_at is not None:
                deadline = min(deadline, membership.lease.expires_at)
        positions, failure = fetch_positions(
            self._caller(session, deadline),
            session.credentials.current(),
            self._clock.monotonic,
            wanted,
            group.config,
        )
        with self._cond:
            group.start_failure = failure  # reported once the answer's records are out (_owed_starts)
        return positions

    def _start_for(
        self, session: Session, added: ShardMap, epoch: int, positions: Mapping[ShardKey, Position]
    ) -> dict[ShardKey, Position] | None:
        """The `start` of an assignment record; shards without a position are owed (lock held)."""
        group = session.checkpoints
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

    def _owed_starts(self, session: Session, positions: Mapping[ShardKey, Position]) -> None:
        """A `start` record for owed shards fetched now and still assigned (lock held)."""
        group = session.checkpoints
        if group is None:
            return
        failure, group.start_failure = group.start_failure, None
        assigned = session.membership.assigned
        group.missing = {key for key in group.missing if cp.is_held(key, assigned)}
        if failure is not None and group.missing - set(positions):
            self._group_error(
                session,
                "start",
                failure.code,
                f"could not read the start of {_shown(group.missing - set(positions))} ({failure.message}); "
                "they come in a later `start` record: do not read them before",
                failure,
            )
        found = {key: positions[key] for key in group.missing if key in positions}
        if found:
            group.missing.difference_update(found)
            self._writer.emit(
                records.start(session.identity, self._clock.instant(), session.membership.epoch, found)
            )

    def _checkpoints_lost(self, session: Session) -> None:
        """Everything was lost: pending values can never be sent, owed starts are void (lock held)."""
        group = session.checkpoints
        if group is None:
            return
        group.missing.clear()
        group.added_at.clear()
        dropped = group.book.drop(shards.EMPTY)
        group.dropped += len(dropped)
        if dropped:
            self._group_error(
                session, "commit", NOT_OWNER,
                f"shards lost before their checkpoints were sent; dropped {_values(dropped)}",
            )  # fmt: skip

    # -- offering values (control ops, any thread; lock held)

    def _offer(
        self, session: Session, values: Mapping[ShardKey, Checkpoint], now: float, epoch: int | None = None
    ) -> int:
        """Queue the values this node may commit; returns how many were queued (refusals are reported).

        With `epoch` (the epoch downstream made the values under), values of shards added after it
        are refused: they predate the current hold of the shard (a loss and a re-join in between).
        """
        group = session.checkpoints
        if group is None:
            self._group_error(
                session, "control", CHECKPOINTS_OFF,
                "this group has no `checkpoints` in its config: nothing committed",
            )  # fmt: skip
            return 0
        held = self._held(session, now)
        mine, others = cp.split_held(values, held)
        if others:
            self._group_error(
                session, "control", NOT_OWNER,
                f"not held under a valid lease, nothing sent for {_values(others)}",
            )  # fmt: skip
        if epoch is not None:
            stale = {key: value for key, value in mine.items() if group.added_at.get(key, 0) > epoch}
            if stale:
                self._group_error(
                    session, "control", STALE_EPOCH,
                    f"added again after epoch {epoch}, nothing sent for {_values(stale)}",
                )  # fmt: skip
                mine = {key: value for key, value in mine.items() if key not in stale}
        valid: dict[ShardKey, Checkpoint] = {}
        for key, value in mine.items():
            problem = session.provider.checkpoint_problem(value)
            if problem is None:
                valid[key] = value
            else:
                self._group_error(session, "control", INVALID_CHECKPOINT, f"{_shown({key})}: {problem}")
        group.book.offer(valid, now)
        self._schedule_commit(session)
        return len(valid)

    def commit(
        self, targets: Sequence[Session], values: Mapping[ShardKey, Checkpoint], epoch: int | None = None
    ) -> int:
        """The `commit` control op. With several matching groups, a shard none of them holds is
        refused once; each group takes the values of the shards it holds. Returns how many values
        were queued (0: nothing will be sent, and error records say why)."""
        with self._cond:
            now = self._clock.monotonic()
            if len(targets) == 1:
                return self._offer(targets[0], values, now, epoch)
            queued = 0
            unclaimed = dict(values)
            for session in targets:
                held = self._held(session, now) if session.checkpoints is not None else shards.EMPTY
                mine, _ = cp.split_held(values, held)
                if mine:
                    queued += self._offer(session, mine, now, epoch)
                    for key in mine:
                        unclaimed.pop(key, None)
            if unclaimed:
                self._group_error(
                    targets[0], "control", NOT_OWNER,
                    f"no matching group holds these under a valid lease: {_values(unclaimed)}",
                )  # fmt: skip
            return queued

    # -- release after flush (lock held)

    def _release(self, session: Session, released: ShardMap) -> ShardMap:
        """Stop claiming these revoked shards, once any checkpoint pending for them is committed.
        Returns the ones released now (the rest follow once their values are committed)."""
        group = session.checkpoints
        if group is None or self._stopping:
            return self._release_now(session, released)
        mine = session.releasing_among(released)
        waiting = group.book.hold_release(mine)
        if waiting:
            log.info("%s: committing %s before releasing them", session.config.label, shards.to_json(waiting))
            self._schedule_commit(session)
        return self._release_now(session, shards.minus(mine, waiting))

    # -- sending (a worker, or the main thread during a stop)

    def _commit_job(self, session: Session, cap: float | None = None) -> None:
        group = session.checkpoints
        assert group is not None
        with self._cond:
            now = self._clock.monotonic()
            held = self._held(session, now)
            batch, lost = group.book.take(held, now)
            group.dropped += len(lost)
            if lost:
                self._group_error(
                    session, "commit", NOT_OWNER,
                    f"shards no longer held when the commit was due; dropped {_values(lost)}",
                )  # fmt: skip
            lease = session.membership.lease
            deadline = now + call_budget(session.interval, lease.remaining(now) if lease.valid(now) else None)
            if cap is not None:
                deadline = min(deadline, cap)
            if batch is None:
                self._commit_settled(session, {}, [])
                return
        credentials = session.credentials.current()

        def still_held(key: ShardKey) -> bool:
            with self._cond:
                return cp.is_held(key, self._held(session, self._clock.monotonic()))

        outcomes, failures = send_commit(
            self._caller(session, deadline), credentials, batch.values, still_held
        )
        with self._cond:
            self._commit_settled(session, outcomes, failures)

    def _commit_settled(
        self,
        session: Session,
        outcomes: Mapping[ShardKey, str],
        failures: list[tuple[dict[ShardKey, Checkpoint], ProviderError]],
    ) -> None:
        group = session.checkpoints
        assert group is not None
        now = self._clock.monotonic()
        committed, dropped = group.book.settle(outcomes, now)
        group.committed += len(committed)
        group.dropped += len(dropped)
        group.sending = False
        self._cond.notify_all()  # a stop may be waiting for this group's commit
        if self._records_closed:
            return  # a call that outlived the stop: `stopped` was the last record
        at = self._clock.instant()
        if committed:
            self._writer.emit(records.committed(session.identity, at, session.membership.epoch, committed))
        for values, failure in failures:
            gone = {key: value for key, value in values.items() if key in dropped}
            fate = f"dropped {_values(gone)}" if gone else f"will retry {_values(values)}"
            self._group_error(session, "commit", failure.code, f"{failure.message}; {fate}", failure)
        self._release_now(session, group.book.releasable())
        if not self._stopping:
            self._schedule_commit(session)

    def _flush_on_stop(self) -> None:
        """A clean stop: commit what is pending for held shards before `lost` and `stopped`."""
        groups = [s for s in self.sessions if s.checkpoints is not None]
        if not groups:
            return
        deadline = self._clock.monotonic() + STOP_COMMIT_SECONDS
        with self._cond:
            while any(_busy(s.checkpoints) for s in groups):
                left = deadline - self._clock.monotonic()
                if left <= 0:
                    break  # a group whose commit is still in flight is left to it
                self._cond.wait(left)
        for session in groups:
            group = session.checkpoints
            assert group is not None
            for _ in range(cp.MAX_ATTEMPTS):
                with self._cond:
                    if group.sending or not group.book.pending or self._clock.monotonic() >= deadline:
                        break
                    group.book.flush()
                    group.sending = True
                self._commit_job(session, deadline)


def _busy(group: GroupCheckpoints | None) -> bool:
    return group is not None and group.sending
