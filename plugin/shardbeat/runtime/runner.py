"""The scheduler: drives every group's heartbeats, bootstrap and lease watchdog off one heap.

Threads:
- the calling (main) thread runs the heap: due beats go to the worker pool, lease deadlines and ack
  deadlines are acted on in place. It never does I/O, so a hanging request cannot delay a `lost`;
- a small pool of daemon workers does the network calls (no thread per group);
- the record writer (output.py) drains the record queue to stdout.
Everything mutable is guarded by one lock (`self._cond`); no lock is held during network I/O.

Bootstrap and heartbeats both go over runtime/transport.py (HttpTransport): it bounds a call by its
deadline even against a peer that trickles its answer, and keeps `requests` (~6 MB RSS, ~100 ms of
start-up) out of the process; requests serves only the credential sources (metadata/STS) and doctor.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from shardbeat.core import membership as ms
from shardbeat.core import records, shards
from shardbeat.core.checkpoints import Checkpoint, Position, ShardKey
from shardbeat.core.credential_refresh import DEFAULT_POLICY, RefreshPolicy
from shardbeat.core.interval_fit import fitted_interval
from shardbeat.core.on_demand import OnDemandBudget, on_demand_at
from shardbeat.core.schedule import Retry, call_budget
from shardbeat.core.shards import ShardMap
from shardbeat.core.skew import WARN_ABOVE
from shardbeat.providers import server_values
from shardbeat.providers.base import HttpResponse, ProviderError
from shardbeat.runtime.bootstrap import run_bootstrap
from shardbeat.runtime.clock import Clock
from shardbeat.runtime.cloud_credentials import DefaultSessions, SessionsFactory
from shardbeat.runtime.credential_refresher import CredentialPool, RefreshingCredentials
from shardbeat.runtime.network import Network
from shardbeat.runtime.output import RecordWriter
from shardbeat.runtime.runner_checkpoints import COMMIT, CheckpointOps, CommitJob
from shardbeat.runtime.session import Session, SessionSnapshot, make_provider
from shardbeat.runtime.timeline import Timeline
from shardbeat.runtime.transport import HttpTransport, Transport, TransportError
from shardbeat.views.shard_text import shard_text

if TYPE_CHECKING:
    import requests

    from shardbeat.config import GroupConfig

log = logging.getLogger("shardbeat.runner")

STOP_FLUSH_SECONDS = 1.0
OUTPUT_LOST = 1  # exit status when records could no longer be written (see `abandon`)
MAX_WORKERS = 32
BEAT, LEASE, ACK = 0, 1, 2


def _sts_session(network: Network) -> requests.Session:
    from shardbeat.runtime.http_session import make_session  # requests: only for a credential source

    return make_session(network)


class Runner(CheckpointOps):
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
    ) -> None:
        self._clock = clock or Clock()
        self._rng = rng or random.Random()
        # The process's proxy/CA rules: credential sources build their sessions from it (make_session).
        self.network = network = network or Network()
        # Heartbeats and bootstrap share the lean transport: it holds a call to its deadline even
        # against a trickling peer, and leaves requests unloaded unless a credential source needs it.
        self._transport = transport or HttpTransport(self._clock.monotonic, network=network)
        self._writer = writer
        self._cond = threading.Condition()
        self._timeline: Timeline[Session] = Timeline()
        self._stopping = False
        self._quiet = False
        self._exit_status = 0
        self._records_closed = False  # the stop wrote its last records: nothing may follow them
        self._work: queue.SimpleQueue[Session | CommitJob | None] = queue.SimpleQueue()
        self._on_demand_budget = OnDemandBudget()
        now = self._clock.monotonic()
        # First beats come promptly (spread a little so a big config does not fire in one burst); after
        # that each group keeps its own random phase on the grid, so many groups never beat in lockstep
        # (which also keeps CLS under its per-account request rate).
        spread = min(min((g.heartbeat_interval for g in groups), default=1.0), 0.005 * len(groups))
        self.sessions = []
        # Temporary keys refresh on threads of their own (never on the scheduler or a beat).
        # STS goes by the process's proxy/CA rules; metadata stays direct (DefaultSessions).
        sessions = credential_sessions or (
            lambda: DefaultSessions(control_plane=lambda: _sts_session(network))
        )
        self._credentials = CredentialPool(
            groups, self._clock, sessions, self._credential_failure, credential_policy
        )
        with self._cond:
            for i, g in enumerate(groups):
                grid = now + (self._rng.uniform(0, g.heartbeat_interval) if i else 0.0)
                keys = self._credentials.for_group(g)
                session = Session.create(i, g, make_provider(g), grid, self._rng, keys)
                self.sessions.append(session)
                self._push(BEAT, now + (self._rng.uniform(0, spread) if i else 0.0), session)
        n_workers = workers or min(len(self.sessions), MAX_WORKERS)
        self._threads = [
            threading.Thread(target=self._worker, name=f"shardbeat-beat-{i}", daemon=True)
            for i in range(max(1, n_workers))
        ]

    # -- scheduling (caller holds the lock) ---------------------------------------------------------

    def _push(self, kind: int, at: float, session: Session) -> None:
        if kind == BEAT:
            session.due_version += 1
            session.due_at = at
        if self._timeline.push(at, kind, session, session.due_version):
            self._cond.notify()  # only an earlier wake-up needs the scheduler's attention

    def _beat_now(self, session: Session) -> None:
        if session.in_flight:
            session.beat_soon = True
        else:
            self._push(BEAT, self._clock.monotonic(), session)

    # -- main loop ----------------------------------------------------------------------------------

    def run(self) -> int:
        self._credentials.start()
        for t in self._threads:
            t.start()
        with self._cond:
            while not self._stopping:
                now = self._clock.monotonic()
                for due in self._timeline.pop_due(now):
                    session = due.item
                    if due.kind == LEASE:
                        self._lease_fired(session, now)
                    elif due.kind == ACK:
                        self._ack_deadline(session, now)
                    elif due.kind == COMMIT:
                        self._commit_due(session, due.version)
                    elif due.version == session.due_version and not session.in_flight:
                        session.in_flight = True
                        session.due_at = float("inf")
                        self._work.put(session)
                self._cond.wait(self._timeline.wait(now))
        return self._shutdown()

    def stop(self, quiet: bool = False) -> None:
        """Idempotent; safe from signal handlers and other threads."""
        with self._cond:
            self._quiet = self._quiet or quiet
            self._stopping = True
            self._cond.notify_all()

    def abandon(self, reason: str) -> None:
        """Records can no longer be written: let go of every shard now and stop (exit OUTPUT_LOST).

        A node that cannot tell downstream must not hold shards. Every membership is dropped at once
        (no record: there is no one to write it to), so no heartbeat from here on claims anything,
        and no new heartbeat starts; the server hands the shards on after its timeout. Idempotent,
        any thread.
        """
        with self._cond:
            if self._exit_status == OUTPUT_LOST:
                return
            self._exit_status = OUTPUT_LOST
            for session in self.sessions:
                session.membership.drop(ms.STOPPED)
            self._quiet = True
            self._stopping = True
            self._cond.notify_all()
        log.error("%s: downstream can no longer be told anything; let go of all shards and stopping", reason)

    def _watchdog(self, session: Session, now: float) -> None:
        lost = session.membership.expire(now)
        if lost is not None:
            self._emit_event(session, lost)

    def _lease_fired(self, session: Session, now: float) -> None:
        """A session's one queued lease deadline came due: expire, or wait for the renewed deadline."""
        session.lease_queued = False
        self._watchdog(session, now)
        self._queue_lease(session)

    def _queue_lease(self, session: Session) -> None:
        # Leases only grow, so one entry per session suffices: when it fires early it re-queues itself.
        expires = session.membership.lease.expires_at
        if expires is not None and not session.lease_queued:
            session.lease_queued = True
            self._push(LEASE, expires, session)

    def _shutdown(self) -> int:
        for _ in self._threads:
            self._work.put(None)
        if not self._quiet:
            self._flush_on_stop()
            with self._cond:
                for s in self.sessions:
                    lost = s.membership.drop(ms.STOPPED)
                    if lost is not None:
                        self._emit_event(s, lost)
                    self._writer.emit(records.stopped(s.identity, self._clock.instant(), s.membership.epoch))
                self._records_closed = True
            if not self._writer.flush(STOP_FLUSH_SECONDS) and self._exit_status == 0:
                # Downstream was never told `lost`/`stopped`: say so, and do not report a clean stop.
                log.error(
                    "the last records (lost, stopped) were not written within %gs: stdout's reader is "
                    "not reading; it may still act on shards until its last lease_expires",
                    STOP_FLUSH_SECONDS,
                )
                self._exit_status = 1
        self._writer.close(0.2)
        self._credentials.close()
        self._transport.close()
        log.info("stopped")
        return self._exit_status

    # -- network calls (worker threads) -------------------------------------------------------------

    def _worker(self) -> None:
        while (item := self._work.get()) is not None:
            if isinstance(item, CommitJob):
                self._run_commit(item.session)
                continue
            session = item
            try:
                if session.bootstrapped:
                    self._beat(session)
                else:
                    self._bootstrap(session)
            except Exception:  # a bug must not take the whole process down with it
                log.exception("internal error in group %s", session.config.label)
                with self._cond:
                    session.in_flight = False
                    self._push(BEAT, self._clock.monotonic() + session.interval, session)

    def _cancelled(self, session: Session) -> bool:
        """A stop (or an abandon) came while this beat waited for a worker: do not send it. A broken
        writer cancels it too, even if nobody told us (belt and braces for on_broken)."""
        if self._writer.broken:
            self.abandon(self._writer.broken_reason or "the record writer stopped")
        if self._stopping:
            session.in_flight = False
        return self._stopping

    def _run_commit(self, session: Session) -> None:
        try:
            self._commit_job(session)
        except Exception:  # a bug must not take the whole process down with it
            log.exception("internal error committing checkpoints of %s", session.config.label)
            with self._cond:
                if session.checkpoints is not None:
                    session.checkpoints.book.settle({}, self._clock.monotonic())
                    session.checkpoints.sending = False
                    self._cond.notify_all()
                    self._schedule_commit(session)

    def _bootstrap(self, session: Session) -> None:
        started = self._clock.monotonic()
        deadline = started + call_budget(session.interval, None)
        try:
            credentials = session.credentials.current(deadline)
        except ProviderError as exc:  # no key from the credential source yet
            with self._cond:
                session.in_flight = False
                if not self._stopping:
                    self._on_failure(session, exc, self._clock.monotonic(), source="bootstrap")
            return
        sent_wall = self._clock.wall()
        outcome = run_bootstrap(
            session.config,
            session.provider,
            self._transport,
            credentials,
            lambda: session.server_clock.now(self._clock.wall()),
            deadline,
        )
        if outcome.answer is not None:
            self._observe_clock(session, outcome.answer, sent_wall)
        with self._cond:
            session.in_flight = False
            if self._stopping:
                return
            now = self._clock.monotonic()
            if outcome.done:
                session.bootstrapped = True
                if outcome.timeout is not None and outcome.timeout != session.timeout:
                    session.use_server_timeout(outcome.timeout)
                    self._fit_interval(session, now)
                self._push(BEAT, now, session)
            elif outcome.failure is not None:
                self._on_failure(session, outcome.failure, now, source="bootstrap")

    def _fit_interval(self, session: Session, now: float) -> None:
        """Never flap: an interval the server's timeout cannot carry is lowered until it fits."""
        lease = session.membership.lease
        fitted = fitted_interval(session.interval, lease.timeout, lease.margin)
        if fitted is None:
            return
        log.warning(
            "%s: heartbeat_interval %gs does not fit the server's group timeout %gs (lease %gs after the "
            "margin): beating every %gs instead; lower heartbeat_interval, or set update_group: true to "
            "give the group the configured timeout",
            session.config.label,
            session.interval,
            lease.timeout,
            lease.timeout - lease.margin,
            fitted,
        )
        session.use_interval(fitted, now)

    def _beat(self, session: Session) -> None:
        with self._cond:
            if self._cancelled(session):
                return
            claim = session.membership.claim()
            lease = session.membership.lease
            sent_at = self._clock.monotonic()
            session.last_sent = sent_at
            budget = call_budget(session.interval, lease.remaining(sent_at) if lease.valid(sent_at) else None)
        sent_wall = self._clock.wall()
        provider = session.provider
        response: HttpResponse | None = None
        assigned: ShardMap | None = None
        failure: ProviderError | None = None
        try:
            # The latest key (token included); waits only when there is none at all.
            credentials = session.credentials.current(sent_at + budget)
            request = provider.heartbeat_request(claim, session.server_clock.now(sent_wall), credentials)
            response = self._transport.send(provider.endpoint, request, sent_at + budget)
            assigned = provider.parse_heartbeat(response)
        except TransportError as exc:  # the message names the endpoint, the step and the fix
            failure = ProviderError(exc.code, exc.describe(provider.endpoint, budget), retry=Retry.FAST)
        except ProviderError as exc:
            failure = exc
        received = self._clock.monotonic()
        if response is not None:
            self._observe_clock(session, response, sent_wall)
        positions = None
        if assigned is not None and session.checkpoints is not None:
            with self._cond:
                wanted = self._starts_to_fetch(session, assigned, received)
            positions = self._fetch_starts(session, wanted, sent_at, received)
        with self._cond:
            session.in_flight = False
            if self._stopping:
                return
            # A lease that ran out while this call was in flight (or the process was frozen) is
            # reported before anything this answer says, whatever it says.
            self._watchdog(session, received)
            session.counters.beats += 1
            if assigned is not None:
                applied = received if positions is None else self._clock.monotonic()  # starts took time
                self._on_success(session, assigned, sent_at, received, positions, applied)
            elif failure is not None:
                self._on_failure(session, failure, received)
            if session.beat_soon:
                session.beat_soon = False
                self._push(BEAT, received, session)
            if session.on_demand:
                session.on_demand = False
                self._on_demand(session)

    def _on_success(
        self,
        session: Session,
        assigned: ShardMap,
        sent_at: float,
        received: float,
        positions: Mapping[ShardKey, Position] | None = None,
        applied: float | None = None,
    ) -> None:
        """`positions`: start positions read for this answer; `applied`: now, when that took time."""
        if session.last_error is not None:
            streak = session.error_summary.recovered(received)
            after = f" after {streak.failures} failed call(s) over {streak.duration:.1f}s" if streak else ""
            log.info("%s: heartbeat ok again%s", session.config.label, after)
            session.last_error = None
        events = session.membership.on_success(assigned, sent_at, received if applied is None else applied)
        session.latency.observe(received - sent_at)
        session.last_latency = received - sent_at
        latency_ms = (received - sent_at) * 1000
        for event in events:
            self._emit_event(session, event, latency_ms, positions)
        if positions is not None:
            self._owed_starts(session, positions)
        self._queue_lease(session)
        self._push(BEAT, session.pacer.after_success(received), session)

    def _on_failure(
        self, session: Session, failure: ProviderError, now: float, source: str = "heartbeat"
    ) -> None:
        session.counters.failures += 1
        if failure.credentials_rejected:
            session.credentials.refresh()  # a rotated key may be waiting in the credentials file
        if failure.retry is Retry.REJOIN:
            lost = session.membership.drop(ms.CONSUMER_UNKNOWN)
            if lost is not None:
                self._emit_event(session, lost)
        due = session.pacer.after_failure(now, failure.retry)
        streak = session.pacer.streak
        verdict = session.error_summary.failed(f"{source}:{failure.code}", now)
        log.log(
            logging.WARNING if verdict.log else logging.DEBUG,
            "%s: %s failed (%s: %s; attempt %d), retrying in %.2fs%s",
            session.config.label,
            source,
            failure.code,
            failure.message,
            streak,
            due - now,
            f" ({verdict.repeats} more times in the last {verdict.since:.0f}s)" if verdict.repeats else "",
        )
        session.last_error = failure.code
        session.last_failure = (failure.code, failure.message, now)
        self._writer.emit(
            records.error(
                session.identity,
                self._clock.instant(),
                failure.code,
                failure.message,
                failure.status,
                failure.request_id,
                due - now,
                source,
            )
        )
        self._push(BEAT, due, session)

    def _observe_clock(self, session: Session, response: HttpResponse, sent_wall: float) -> None:
        date = response.headers.get("date")
        if not date:
            return
        if date == session.last_date[0]:
            server = session.last_date[1]  # Date changes once a second: most beats reuse the parse
        else:
            parsed = server_values.http_date(date)  # an absurd Date is ignored, never applied
            if parsed is None:
                return
            server = parsed
            session.last_date = (date, server)
        with self._cond:
            before = session.server_clock.offset
            offset = session.server_clock.observe(server, sent_wall, self._clock.wall())
        if abs(offset) > WARN_ABOVE and abs(before) <= WARN_ABOVE:
            log.warning(
                "%s: this host's clock is %.0fs %s the server's; signing with corrected time",
                session.config.label,
                abs(offset),
                "behind" if offset > 0 else "ahead of",
            )

    # -- records ------------------------------------------------------------------------------------

    def _emit_event(
        self,
        session: Session,
        event: ms.Event,
        latency_ms: float | None = None,
        positions: Mapping[ShardKey, Position] | None = None,
    ) -> None:
        start = None
        if isinstance(event, ms.AssignmentChanged):
            start = self._start_for(session, event.added, event.epoch, positions or {})
        record = records.from_event(session.identity, event, self._clock.instant(), latency_ms, start)
        on_written: Callable[[], None] | None = None
        if isinstance(event, ms.AssignmentChanged):
            session.counters.changes += 1
            log.info(
                "%s: assignment (epoch %d): added %s, revoked %s; holds %s",
                session.config.label,
                event.epoch,
                shard_text(event.added, False),
                shard_text(event.revoked, False),
                shard_text(event.assigned, False),
            )
            if event.revoked:
                if session.release_on_ack:
                    self._await_ack(session, event.revoked)
                else:
                    on_written = self._releaser(session, event.revoked)
        elif isinstance(event, ms.Lost):
            session.counters.lost += 1
            session.forget_acks(None)
            log.log(
                logging.INFO if event.reason == ms.STOPPED else logging.WARNING,
                "%s: %s; dropped %s",
                session.config.label,
                event.reason.replace("_", " "),
                shard_text(event.lost, False),
            )
        self._writer.emit(record, on_written)
        if isinstance(event, ms.Lost):
            self._checkpoints_lost(session)  # after the `lost` record: it must come first

    def _releaser(self, session: Session, revoked: ShardMap) -> Callable[[], None]:
        """Once the revoke is on stdout, downstream has been told: stop listing those shards and beat
        now, so the server can hand them to their next owner without waiting a full interval."""

        def release() -> None:
            with self._cond:
                self._release(session, revoked)

        return release

    def _release_now(self, session: Session, released: ShardMap) -> ShardMap:
        """Stop claiming these revoked shards (caller holds the lock) and tell the server at once.
        Returns the ones that were waiting to be released."""
        mine = session.releasing_among(released)
        if not shards.count(mine):
            return {}
        session.membership.release(mine)
        session.forget_acks(mine)
        log.info(
            "%s: released %s (the server may hand them on)", session.config.label, shard_text(mine, False)
        )
        if not self._stopping:
            self._beat_now(session)
        return mine

    # -- release: ack -------------------------------------------------------------------------------

    def _await_ack(self, session: Session, revoked: ShardMap) -> None:
        give_up = self._clock.monotonic() + session.release_grace
        session.await_acks(revoked, give_up)
        self._push(ACK, give_up, session)

    def _ack_deadline(self, session: Session, now: float) -> None:
        released = session.overdue_acks(now)
        if not released:
            return
        log.warning(
            "%s: no `released` ack within %gs for %s; releasing anyway",
            session.config.label,
            session.release_grace,
            shard_text(released, False),
        )
        self._release(session, released)

    # -- control operations (any thread) ------------------------------------------------------------

    def select(self, group: str | None, provider: str | None, consumer: str | None) -> list[Session]:
        return [s for s in self.sessions if s.matches(group, provider, consumer)]

    def release(
        self,
        targets: Sequence[Session],
        released: ShardMap,
        checkpoints: Mapping[ShardKey, Checkpoint] | None = None,
        epoch: int | None = None,
    ) -> list[tuple[ShardMap, ShardMap]]:
        """`released` (with `checkpoints`: committed before the release takes effect).
        -> per target, (the shards this released, those still releasing)."""
        if checkpoints:
            self.commit(targets, checkpoints, epoch)
        with self._cond:
            return [(self._release(s, released), dict(s.membership.releasing)) for s in targets]

    def held(self, targets: Sequence[Session], held: ShardMap) -> list[tuple[ShardMap, ShardMap]]:
        """Downstream says what it really holds: releasing shards it no longer holds are done.
        -> per target, (the shards this released, those still releasing)."""
        with self._cond:
            return [
                (self._release(s, shards.minus(s.membership.releasing, held)), dict(s.membership.releasing))
                for s in targets
            ]

    def beat_now(self, targets: Sequence[Session]) -> None:
        """On-demand beats (control `heartbeat`, reload): coalesced and spaced, see core/on_demand.py."""
        with self._cond:
            for session in targets:
                if session.bootstrapped:
                    self._on_demand(session)

    def _on_demand(self, session: Session) -> None:
        if session.in_flight:
            session.on_demand = True  # one owed beat, however many were asked for
            return
        at = on_demand_at(self._clock.monotonic(), session.last_sent, session.interval)
        if at < session.due_at:  # else a beat is due by then anyway
            at = self._on_demand_budget.slot(at)
            if at < session.due_at:
                self._push(BEAT, at, session)

    def refresh_credentials(self) -> None:
        for session in self.sessions:
            session.credentials.refresh()

    def _credential_failure(self, source: RefreshingCredentials, message: str, retry_in: float) -> None:
        """A credential source failed to refresh (its own thread): an `error` record per group using it."""
        at = self._clock.instant()
        for index in self._credentials.users.get(source.spec, []):
            session = self.sessions[index] if index < len(self.sessions) else None
            if session is not None:
                self._writer.emit(
                    records.error(
                        session.identity,
                        at,
                        "CredentialRefreshFailed",
                        message,
                        None,
                        None,
                        retry_in,
                        "credentials",
                    )
                )

    def emit_status(self, write: bool = True) -> list[dict[str, object]]:
        """A status record per group, written to stdout unless `write` is false; returned with the
        extra figures an operator asks for (control_replies.status_entry)."""
        from shardbeat.runtime.control_replies import status_entry

        entries: list[dict[str, object]] = []
        with self._cond:
            at = self._clock.instant()
            for s in self.sessions:
                m = s.membership
                c = s.counters
                counters = {
                    "beats": c.beats,
                    "failures": c.failures,
                    "changes": c.changes,
                    "lost": c.lost,
                    "output_dropped": self._writer.dropped,
                }
                if s.checkpoints is not None:
                    counters["checkpoints_committed"] = s.checkpoints.committed
                    counters["checkpoints_dropped"] = s.checkpoints.dropped
                expires = m.lease.expires_at if m.lease.valid(at.mono) else None
                record = records.status(
                    s.identity,
                    at,
                    m.epoch,
                    m.assigned,
                    m.releasing,
                    expires,
                    s.last_error,
                    counters,
                    s.server_clock.offset,
                    s.latency.snapshot(),
                )
                entries.append(status_entry(record, s, at.mono))
                if write:
                    self._writer.emit(record)
        return entries

    def snapshot(self) -> list[SessionSnapshot]:
        with self._cond:
            now = self._clock.monotonic()
            return [s.snapshot(now) for s in self.sessions]

    @property
    def writer_dropped(self) -> int:
        return self._writer.dropped

    def control_error(self, code: str, message: str) -> None:
        log.warning("control: %s: %s", code, message)
        self._writer.emit(records.control_error(self._clock.instant(), code, message))
