"""The shell around the group drivers: one heap of due times, one loop thread, the exchange that
carries the drivers' calls, and the record writer.

Every rule lives in core/driver.py (one GroupDriver per group, sans-I/O); this module only wires:
- the loop thread (the caller of `run`) pops what is due off the heap, lets the driver act, starts
  the calls it hands over and feeds their answers back. It never blocks on I/O: the default
  exchange (runtime/http_loop.py) is non-blocking, and an injected blocking Transport runs on worker
  threads (runtime/exchange.py ThreadedExchange), its answers handed back inside `poll`; so a
  hanging request cannot delay a `lost`;
- control operations (stdin, the socket, signals) come from other threads (runtime/runner_control.py):
  they take the lock, act on the driver and wake the loop when they moved a due time earlier;
- the record writer (runtime/output.py) drains the records to stdout on its own thread.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from shardbeat.core.calls import Answer, Call, Pause, Send
from shardbeat.core.credential_refresh import DEFAULT_POLICY, RefreshPolicy
from shardbeat.core.driver import GroupDriver
from shardbeat.core.on_demand import OnDemandBudget
from shardbeat.core.records import Instant, Record
from shardbeat.core.redaction import describe_exception
from shardbeat.core.schedule import Retry
from shardbeat.core.shards import ShardMap
from shardbeat.core.wire import HttpResponse, ProviderError
from shardbeat.providers import server_values
from shardbeat.providers.services import make_provider
from shardbeat.runtime.clock import Clock
from shardbeat.runtime.control_channels import ProblemBudget
from shardbeat.runtime.credentials import CredentialSource
from shardbeat.runtime.exchange import Exchange, ThreadedExchange
from shardbeat.runtime.network import Network
from shardbeat.runtime.output import RecordWriter
from shardbeat.runtime.refused_dates import RefusedDates
from shardbeat.runtime.runner_control import ControlOps
from shardbeat.runtime.timeline import Timeline
from shardbeat.runtime.transport import Transport, TransportError

if TYPE_CHECKING:
    import requests

    from shardbeat.config import GroupConfig
    from shardbeat.runtime.cloud_credentials import SessionsFactory
    from shardbeat.runtime.credential_refresher import CredentialPool, RefreshingCredentials

log = logging.getLogger("shardbeat.runner")

STOP_FLUSH_SECONDS = 1.0
STOP_COMMIT_SECONDS = 1.0  # a clean stop waits at most this long for the last commits
OUTPUT_LOST = 1  # exit status when records could no longer be written (see `abandon`)
INTERNAL_ERROR = 1  # exit status after a bug stopped the loop (see `run`)
INTERNAL_CODE = "InternalError"  # the failure a call gets when its answer could not be read (a bug)
MAX_WORKERS = 32  # threads for an injected blocking transport
MAX_SLEEP = 1.0  # the loop looks at the heap at least this often, whatever it was told
MAX_SLOT = 0.5  # seconds: see _slotted
PER_SLOT = 12  # groups a slot holds on average, at most
DUE, RESUME = 0, 1  # heap entries: a driver's next due time, a paused call's resume time


def _sts_session(network: Network) -> requests.Session:
    from shardbeat.runtime.http_session import make_session  # requests: only for a credential source

    return make_session(network)


def _default_exchange(clock: Clock, network: Network) -> Exchange:
    from shardbeat.runtime.http_loop import HttpLoop  # non-blocking: answers handled on the loop thread

    return HttpLoop(clock.monotonic, network=network)


def _slotted(phase: float, interval: float, groups: int) -> float:
    """Grid phases fall on slot boundaries: groups whose phases share a slot beat in one wake-up of the
    loop, and a wake-up (a cold start of the interpreter's caches, two thread hand-offs) is most of
    what a beat costs the process. A slot holds about PER_SLOT groups (so a wake-up's work stays a
    few milliseconds: lateness), is at most MAX_SLOT long, and an interval keeps ten slots at least,
    so the service still sees the beats spread over the interval."""
    slot = min(MAX_SLOT, interval / 10, interval * PER_SLOT / max(1, groups))
    return math.floor(phase / slot) * slot


class Runner(ControlOps):
    def __init__(
        self,
        groups: Sequence[GroupConfig],
        writer: RecordWriter,
        transport: Transport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        workers: int | None = None,
        network: Network | None = None,
        credential_sessions: SessionsFactory | None = None,
        credential_policy: RefreshPolicy = DEFAULT_POLICY,
        exchange: Exchange | None = None,
    ) -> None:
        self._clock = clock or Clock()
        rng = rng or random.Random()
        # The process's proxy/CA rules: credential sources build their sessions from it (make_session).
        self.network = network = network or Network()
        if exchange is None:
            exchange = (
                ThreadedExchange(transport, workers or min(len(groups), MAX_WORKERS))
                if transport is not None
                else _default_exchange(self._clock, network)
            )
        self._exchange: Exchange = exchange
        self._writer = writer
        self._lock = threading.RLock()
        self._timeline: Timeline[object] = Timeline()
        self._stopping = False
        self._quiet = False
        self._exit_status = 0
        self._loop_ident: int | None = None  # the loop thread's (threading.get_ident), once it runs
        self._orphans: list[tuple[GroupDriver, Call]] = []  # calls made off the loop thread
        self._on_demand_budget = OnDemandBudget()
        self._refusals = ProblemBudget()  # refused control ops, reported at a bounded rate
        self._status_asks = ProblemBudget()  # `status` ops that write records: a loop must not flood stdout
        self._refused_dates = RefusedDates()  # answers whose Date was refused, logged at a bounded rate
        # Temporary keys refresh on threads of their own (never on the loop). STS goes by the
        # process's proxy/CA rules; metadata stays direct (DefaultSessions).
        self._credentials: CredentialPool | None = None  # static keys only: nothing is imported for it
        if any(g.credential_source is not None for g in groups):
            from shardbeat.runtime.cloud_credentials import DefaultSessions
            from shardbeat.runtime.credential_refresher import CredentialPool

            sessions = credential_sessions or (
                lambda: DefaultSessions(control_plane=lambda: _sts_session(network))
            )
            self._credentials = CredentialPool(
                groups, self._clock, sessions, self._credential_failure, credential_policy
            )
        now = self._clock.monotonic()
        # First beats come promptly (spread a little so a big config does not fire in one burst); after
        # that each group keeps its own random phase on the grid, so many groups never beat in lockstep
        # (which also keeps CLS under its per-account request rate).
        spread = min(min((g.heartbeat_interval for g in groups), default=1.0), 0.005 * len(groups))
        self.drivers: list[GroupDriver] = []
        self._queued: list[tuple[float, int]] = []  # per driver: (due time, version) of its heap entry
        with self._lock:
            for i, g in enumerate(groups):
                phase = rng.uniform(0, g.heartbeat_interval)
                grid = now + (_slotted(phase, g.heartbeat_interval, len(groups)) if i else 0.0)
                first = now + (rng.uniform(0, spread) if i else 0.0)
                pool = self._credentials
                keys = (pool.for_group(g) if pool is not None else None) or CredentialSource(g)
                scope = "/".join(g.identity.scope)
                driver = GroupDriver(i, g, make_provider(g), keys, grid, first, rng, scope)
                self.drivers.append(driver)
                self._queued.append((float("inf"), 0))
                self._schedule(driver)

    @property
    def sessions(self) -> list[GroupDriver]:
        """The groups, in config order (the control API's name for them)."""
        return self.drivers

    # -- the loop -------------------------------------------------------------------------------------

    def run(self) -> int:
        self._loop_ident = threading.get_ident()
        if self._credentials is not None:
            self._credentials.start()
        while not self._stopping:
            try:
                with self._lock:
                    now = self._clock.monotonic()
                    self._run_due(now)
                    wait = self._timeline.wait(now)
                self._writer.wake()  # once for the records of this turn, as the loop goes to wait
                self._exchange.poll(MAX_SLEEP if wait is None else max(0.0, min(wait, MAX_SLEEP)))
            except Exception:
                # A bug outside any one call (those are caught in _advance): the loop cannot be
                # trusted to keep the leases, so stop the way a stop does, telling downstream `lost`
                # for what is held, rather than die holding shards it never said it let go of.
                log.critical("internal error in the loop (please report it): stopping", exc_info=True)
                self._exit_status = self._exit_status or INTERNAL_ERROR
                self._stopping = True
        return self._shutdown()

    def _run_due(self, now: float) -> None:
        if self._writer.broken:  # belt and braces for on_broken: no beat starts past a broken writer
            self.abandon(self._writer.broken_reason or "the record writer stopped")
            return
        if self._orphans:
            orphans, self._orphans = self._orphans, []
            for driver, call in orphans:
                self._advance(driver, call, None)
        for due in self._timeline.pop_due(now):
            if due.kind == RESUME:
                driver, call = due.item  # type: ignore[misc]
                self._advance(driver, call, Answer(self._clock.instant()))
                continue
            driver = due.item  # type: ignore[assignment]
            if self._queued[driver.index][1] != due.version:
                continue  # superseded by an earlier entry
            self._queued[driver.index] = (float("inf"), due.version)
            driver.poll(self._clock.instant())
            self._settle(driver)

    def _refused(self, record: Record) -> bool:
        """A refused control op of a group (NotOwner, StaleEpoch, ...): reported within the process's
        budget for control problems, the count of those left out named in the next one reported."""
        skipped = self._refusals.take()
        if skipped is None:
            return False
        error = record["error"]
        if skipped:
            error["message"] += f" ({skipped} more refused control ops not reported)"
        log.warning(
            "control: %s/%s: %s: %s", record["group"], record["consumer"], error["code"], error["message"]
        )
        return True

    def _schedule(self, driver: GroupDriver) -> None:
        """Keep the driver's one live heap entry at its next due time (earlier only: a later one
        finds the driver with nothing to do and is re-queued then)."""
        due = driver.next_due()
        queued, version = self._queued[driver.index]
        if due >= queued:
            return
        version += 1
        self._queued[driver.index] = (due, version)
        if self._timeline.push(due, DUE, driver, version) and threading.get_ident() != self._loop_ident:
            self._exchange.wakeup()

    def _settle(self, driver: GroupDriver) -> None:
        """Write what the driver has to say, start the calls it made, and re-queue it."""
        out, calls = driver.take()
        if not out and not calls:
            self._schedule(driver)
            return
        # On the loop thread the writer is woken once per turn of the loop (run), not per record.
        ident = self._loop_ident
        on_loop = ident is None or threading.get_ident() == ident
        for emit in out:
            record = emit.record
            if record["event"] == "error" and record.get("source") == "control" and not self._refused(record):
                continue
            on_written = None if emit.release is None else self._releaser(driver, emit.release)
            self._writer.emit(record, on_written, wake=ident is None or not on_loop)
        for call in calls:
            if on_loop:
                self._advance(driver, call, None)
            else:
                self._orphans.append((driver, call))
                self._exchange.wakeup()
        self._schedule(driver)

    def _advance(self, driver: GroupDriver, call: Call, answer: Answer | None) -> None:
        """Run a call to its next step (loop thread, lock held)."""
        try:
            step = call.send(answer) if answer is not None else next(call)
        except StopIteration:
            self._settle(driver)
            return
        except Exception:  # a bug must not take the whole process down with it
            log.exception("internal error in group %s", driver.config.label)
            driver.recover(call, self._clock.instant())
            self._settle(driver)
            return
        if isinstance(step, Pause):
            self._timeline.push(step.until, RESUME, (driver, call))
        elif isinstance(step, Send):
            self._exchange.start(
                step.endpoint,
                step.request,
                step.deadline,
                lambda result: self._answered(driver, call, step, result),
            )
        self._settle(driver)

    def _answered(
        self, driver: GroupDriver, call: Call, step: Send, result: HttpResponse | TransportError
    ) -> None:
        with self._lock:
            at = self._clock.instant()
            try:
                answer = self._answer_of(step, result, at)
            except Exception as exc:  # a bug (or a lazy import that fails) here: the call still ends
                log.exception("internal error in group %s while reading an answer", driver.config.label)
                failure = ProviderError(INTERNAL_CODE, describe_exception(exc), retry=Retry.FAST)
                answer = Answer(at, failure=failure)
            self._advance(driver, call, answer)

    def _answer_of(self, step: Send, result: HttpResponse | TransportError, at: Instant) -> Answer:
        if isinstance(result, TransportError):  # the message names the endpoint, the step and the fix
            proxy = self.network.proxy_of(step.endpoint)  # a failed resolve or connect was the proxy's
            failure = ProviderError(
                result.code, result.describe(step.endpoint, step.budget, proxy), retry=Retry.FAST
            )
            return Answer(at, failure=failure)
        # A malformed or absurd Date is ignored (None); the parser keeps the last few parses.
        value = result.headers.get("date")
        date = server_values.http_date(value)
        if date is None and value:
            self._refused_dates.note(f"{step.endpoint.host}:{step.endpoint.port}", value, at.mono)
        return Answer(at, response=result, server_date=date)

    def _releaser(self, driver: GroupDriver, revoked: ShardMap) -> Callable[[], None]:
        """Once the revoke is on stdout, downstream has been told: stop listing those shards and beat
        now, so the server can hand them to their next owner without waiting a full interval."""

        def release() -> None:
            with self._lock:
                driver.release(revoked, self._clock.instant())
                self._settle(driver)

        return release

    # -- stopping -------------------------------------------------------------------------------------

    def stop(self, quiet: bool = False) -> None:
        """Idempotent; safe from signal handlers and other threads (takes no lock)."""
        self._quiet = self._quiet or quiet
        self._stopping = True
        self._exchange.wakeup()

    def abandon(self, reason: str) -> None:
        """Records can no longer be written: let go of every shard now and stop (exit OUTPUT_LOST).

        A node that cannot tell downstream must not hold shards. Every membership is dropped at once
        (no record: there is no one to write it to), so no heartbeat from here on claims anything,
        and no new heartbeat starts; the server hands the shards on after its timeout. Idempotent,
        any thread.
        """
        with self._lock:
            if self._exit_status == OUTPUT_LOST:
                return
            self._exit_status = OUTPUT_LOST
            for driver in self.drivers:
                driver.abandon()
            self._quiet = True
            self._stopping = True
        self._exchange.wakeup()
        log.error("%s: downstream can no longer be told anything; let go of all shards and stopping", reason)

    def _shutdown(self) -> int:
        with self._lock:
            for driver in self.drivers:
                driver.stopping = True
        if not self._quiet:
            self._flush_on_stop()
            with self._lock:
                at = self._clock.instant()
                for driver in self.drivers:
                    driver.finish(at)
                    self._settle(driver)
            if not self._writer.flush(STOP_FLUSH_SECONDS) and self._exit_status == 0:
                # Downstream was never told `lost`/`stopped`: say so, and do not report a clean stop.
                log.error(
                    "the last records (lost, stopped) were not written within %gs: stdout's reader is "
                    "not reading; it may still act on shards until its last lease_expires",
                    STOP_FLUSH_SECONDS,
                )
                self._exit_status = 1
        self._writer.close(0.2)
        if self._credentials is not None:
            self._credentials.close()
        self._exchange.close()
        log.info("stopped")
        return self._exit_status

    def _flush_on_stop(self) -> None:
        """A clean stop: commit what is pending for held shards before `lost` and `stopped`."""
        groups = [d for d in self.drivers if d.checkpoints is not None]
        if not groups:
            return
        deadline = self._clock.monotonic() + STOP_COMMIT_SECONDS
        while True:
            with self._lock:
                now = self._clock.monotonic()
                if now >= deadline:
                    return  # a group whose commit is still in flight is left to it
                busy = False
                for driver in groups:
                    busy = driver.flush_for_stop(self._clock.instant(), deadline) or busy
                    self._settle(driver)
                self._run_due(now)  # paused reads resume
                wait = self._timeline.wait(now)
            self._writer.wake()
            if not busy:
                return
            self._exchange.poll(min(deadline - now, wait if wait is not None and wait > 0 else 0.05, 0.05))

    # -- control operations (any thread) --------------------------------------------------------------

    def refresh_credentials(self) -> None:
        for driver in self.drivers:
            driver.credentials.refresh()

    def _credential_failure(self, source: RefreshingCredentials, message: str, retry_in: float) -> None:
        """A credential source failed to refresh (its own thread): an `error` record per group using it."""
        with self._lock:
            at = self._clock.instant()
            users = self._credentials.users if self._credentials is not None else {}
            for index in users.get(source.spec, []):
                if index < len(self.drivers):
                    self.drivers[index].credential_failure(at, message, retry_in)
                    self._settle(self.drivers[index])


__all__ = ["OUTPUT_LOST", "Record", "Runner"]
