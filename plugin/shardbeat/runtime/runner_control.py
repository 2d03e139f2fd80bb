"""The runner's face to the control channels (stdin, the socket, signals, reload): the ops on the
group drivers, called from any thread. Each takes the runner's lock, acts on the drivers it names and
settles them (their records written, their calls started, their due time moved), so the loop thread
sees the change at its next wake-up. The rules themselves are the drivers' (core/)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from shardbeat.core.checkpoints import Checkpoint, ShardKey
from shardbeat.core.driver import GroupDriver
from shardbeat.core.group_checkpoints import commit_across
from shardbeat.core.group_figures import GroupSnapshot
from shardbeat.core.on_demand import OnDemandBudget
from shardbeat.core.records import Instant, control_error
from shardbeat.core.shards import ShardMap
from shardbeat.runtime.clock import Clock
from shardbeat.runtime.control_channels import ProblemBudget
from shardbeat.runtime.lock_walk import walk
from shardbeat.runtime.output import RecordWriter

log = logging.getLogger("shardbeat.runner")


class ControlOps:
    """Mixed into runtime/runner.Runner, which owns these and settles a driver (`_settle`, `_schedule`)."""

    drivers: list[GroupDriver]
    _lock: threading.RLock
    _clock: Clock
    _writer: RecordWriter
    _on_demand_budget: OnDemandBudget
    _status_asks: ProblemBudget

    def _settle(self, driver: GroupDriver) -> None:
        raise NotImplementedError

    def _schedule(self, driver: GroupDriver) -> None:
        raise NotImplementedError

    def select(self, group: str | None, provider: str | None, consumer: str | None) -> list[GroupDriver]:
        return [d for d in self.drivers if d.matches(group, provider, consumer)]

    def release(
        self,
        targets: Sequence[GroupDriver],
        released: ShardMap,
        checkpoints: Mapping[ShardKey, Checkpoint] | None = None,
        epoch: int | None = None,
    ) -> list[tuple[ShardMap, ShardMap]]:
        """`released` (with `checkpoints`: committed before the release takes effect).
        -> per target, (the shards this released, those still releasing)."""
        if checkpoints:
            self.commit(targets, checkpoints, epoch)
        return self._let_go(targets, lambda driver, at: driver.release(released, at))

    def held(self, targets: Sequence[GroupDriver], held: ShardMap) -> list[tuple[ShardMap, ShardMap]]:
        """Downstream says what it really holds: releasing shards it no longer holds are done.
        -> per target, (the shards this released, those still releasing)."""
        return self._let_go(targets, lambda driver, at: driver.held(held, at))

    def _let_go(
        self, targets: Sequence[GroupDriver], act: Callable[[GroupDriver, Instant], ShardMap]
    ) -> list[tuple[ShardMap, ShardMap]]:
        """`act` lets shards of each target go: per target, (what it let go, what is still releasing)."""
        with self._lock:
            at = self._clock.instant()
            done: list[tuple[ShardMap, ShardMap]] = []
            for driver in targets:
                done.append((act(driver, at), dict(driver.membership.releasing)))
                self._settle(driver)
            return done

    def commit(
        self, targets: Sequence[GroupDriver], values: Mapping[ShardKey, Checkpoint], epoch: int | None = None
    ) -> int:
        """The `commit` control op: returns how many values were queued (0: nothing will be sent,
        and error records say why)."""
        with self._lock:
            queued = commit_across(targets, values, epoch, self._clock.instant())
            for driver in targets:
                self._settle(driver)
            return queued

    def beat_now(self, targets: Sequence[GroupDriver]) -> None:
        """On-demand beats (control `heartbeat`, reload): coalesced and spaced, see core/on_demand.py."""
        with self._lock:
            now = self._clock.monotonic()
            for driver in targets:
                driver.ask_beat(now, self._on_demand_budget)
                self._schedule(driver)

    def emit_status(self, write: bool = True) -> list[dict[str, object]]:
        """A status record per group, written to stdout unless `write` is false; returned with the
        extra figures an operator asks for (control_replies.status_entry). Records are written for
        a few asks at once, then one a second: a client looping on `status` would otherwise write
        thousands of records a second downstream (the figures are still returned every time)."""
        from shardbeat.runtime.control_replies import status_entry

        if write and self._status_asks.take() is None:
            log.debug("control: status records not written (asked more often than once a second)")
            write = False

        def entry(driver: GroupDriver, at: Instant) -> dict[str, object]:
            record = driver.status_record(at, self._writer.dropped)
            if write and not driver.records_closed:  # nothing follows `stopped`
                self._writer.emit(record)
            return status_entry(record, driver, at.mono)

        # A piece at a time: thousands of groups must not hold the loop thread up (lock_walk.py).
        return walk(self._lock, self.drivers, self._clock.instant, entry)

    def snapshot(self) -> list[GroupSnapshot]:
        return walk(self._lock, self.drivers, self._clock.monotonic, lambda d, now: d.snapshot(now))

    @property
    def writer_dropped(self) -> int:
        return self._writer.dropped

    def control_error(self, code: str, message: str) -> None:
        log.warning("control: %s: %s", code, message)
        if self.drivers and all(d.records_closed for d in self.drivers):
            return  # every group's `stopped` is out: it stays the last record
        self._writer.emit(control_error(self._clock.instant(), code, message))
