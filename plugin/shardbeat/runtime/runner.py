"""The imperative shell: wires sessions, the scheduler/watchdog, workers, signals and stdout.

Threads:
- the calling (main) thread runs the scheduler and the lease watchdog off one heap of due times; it
  never does I/O, so a hanging request can never delay a `lost` record;
- a small pool of daemon workers sends heartbeats (no thread per group);
- the record writer (output.py) drains the record queue to stdout.
Everything mutable is guarded by one lock (`self._cond`); no lock is held during network I/O.
"""

from __future__ import annotations

import email.utils
import heapq
import itertools
import logging
import queue
import random
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shardbeat.core import membership as ms
from shardbeat.core import records, shards
from shardbeat.core.records import Identity
from shardbeat.core.schedule import Retry, call_budget
from shardbeat.core.shards import ShardMap
from shardbeat.core.skew import WARN_ABOVE
from shardbeat.providers.base import HttpResponse, Provider, ProviderError
from shardbeat.runtime.clock import Clock
from shardbeat.runtime.output import RecordWriter, encoder_for, guard_stdout
from shardbeat.runtime.session import Session
from shardbeat.runtime.transport import HttpTransport, Transport, TransportError

if TYPE_CHECKING:
    from shardbeat.config import Config, GroupConfig

log = logging.getLogger("shardbeat.runner")

STOP_FLUSH_SECONDS = 1.0
MAX_WORKERS = 32
BEAT, LEASE = 0, 1


@dataclass(frozen=True, slots=True)
class _Due:
    at: float
    seq: int
    kind: int
    session: Session
    version: int

    def __lt__(self, other: _Due) -> bool:
        return (self.at, self.seq) < (other.at, other.seq)


def make_provider(group: GroupConfig) -> Provider:
    if group.provider == "sls":
        from shardbeat.providers.sls import SlsProvider

        assert group.project is not None and group.logstore is not None
        return SlsProvider(
            group.endpoint, group.project, group.logstore, group.consumer_group, group.consumer
        )
    from shardbeat.providers.cls import ClsProvider

    assert group.region is not None and group.logset_id is not None and group.topics is not None
    return ClsProvider(
        group.endpoint, group.region, group.logset_id, group.topics, group.consumer_group, group.consumer
    )


class Runner:
    def __init__(
        self,
        groups: Sequence[GroupConfig],
        writer: RecordWriter,
        transport: Transport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        workers: int | None = None,
    ) -> None:
        self._clock = clock or Clock()
        self._rng = rng or random.Random()
        self._transport = transport or HttpTransport(self._clock.monotonic)
        self._writer = writer
        self._cond = threading.Condition()
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._stopping = False
        self._quiet = False
        self._work: queue.SimpleQueue[Session | None] = queue.SimpleQueue()
        now = self._clock.monotonic()
        # Spread first beats a little so many groups do not fire in lockstep forever.
        spread = min(min((g.heartbeat_interval for g in groups), default=1.0), 0.005 * len(groups))
        self.sessions = [
            Session.create(
                index=i,
                provider=make_provider(g),
                identity=Identity(g.provider, g.consumer_group, g.consumer),
                credentials=g.credentials,
                interval=g.heartbeat_interval,
                timeout=g.timeout,
                margin=g.lease_margin,
                start=now + (self._rng.uniform(0, spread) if i else 0.0),
                rng=self._rng,
            )
            for i, g in enumerate(groups)
        ]
        with self._cond:
            for s in self.sessions:
                self._push(BEAT, s.due, s)
        n_workers = workers or min(len(self.sessions), MAX_WORKERS)
        self._threads = [
            threading.Thread(target=self._worker, name=f"shardbeat-beat-{i}", daemon=True)
            for i in range(max(1, n_workers))
        ]

    # -- scheduling (caller holds the lock) ---------------------------------------------------------

    def _push(self, kind: int, at: float, session: Session) -> None:
        if kind == BEAT:
            session.due_version += 1
            session.due = at
        heapq.heappush(self._heap, _Due(at, next(self._seq), kind, session, session.due_version))
        self._cond.notify()

    def _beat_now(self, session: Session) -> None:
        if session.in_flight:
            session.beat_soon = True
        else:
            self._push(BEAT, self._clock.monotonic(), session)

    # -- main loop ----------------------------------------------------------------------------------

    def run(self) -> int:
        for t in self._threads:
            t.start()
        with self._cond:
            while not self._stopping:
                now = self._clock.monotonic()
                while self._heap and self._heap[0].at <= now:
                    due = heapq.heappop(self._heap)
                    if due.kind == LEASE:
                        self._watchdog(due.session, now)
                    elif due.version == due.session.due_version and not due.session.in_flight:
                        due.session.in_flight = True
                        self._work.put(due.session)
                wait = self._heap[0].at - now if self._heap else None
                self._cond.wait(wait)
        return self._shutdown()

    def stop(self, quiet: bool = False) -> None:
        """Idempotent; safe from signal handlers and other threads."""
        with self._cond:
            self._quiet = self._quiet or quiet
            self._stopping = True
            self._cond.notify_all()

    def _watchdog(self, session: Session, now: float) -> None:
        lost = session.membership.expire(now)
        if lost is not None:
            self._emit_event(session, lost)

    def _shutdown(self) -> int:
        for _ in self._threads:
            self._work.put(None)
        if not self._quiet:
            with self._cond:
                for s in self.sessions:
                    lost = s.membership.drop(ms.STOPPED)
                    if lost is not None:
                        self._emit_event(s, lost)
                    self._writer.emit(records.stopped(s.identity, self._clock.instant(), s.membership.epoch))
            self._writer.flush(STOP_FLUSH_SECONDS)
        self._writer.close(0.2)
        self._transport.close()
        log.info("stopped")
        return 0

    # -- heartbeats (worker threads) ----------------------------------------------------------------

    def _worker(self) -> None:
        while (session := self._work.get()) is not None:
            try:
                self._beat(session)
            except Exception:  # a bug must not take the whole process down with it
                log.exception("internal error during a heartbeat of group %s", session.identity.group)
                with self._cond:
                    session.in_flight = False
                    self._push(BEAT, self._clock.monotonic() + session.interval, session)

    def _beat(self, session: Session) -> None:
        with self._cond:
            claim = session.membership.claim()
            lease = session.membership.lease
            sent_at = self._clock.monotonic()
            budget = call_budget(session.interval, lease.remaining(sent_at) if lease.valid(sent_at) else None)
            credentials = session.credentials
        sent_wall = self._clock.wall()
        provider = session.provider
        response: HttpResponse | None = None
        assigned: ShardMap | None = None
        failure: ProviderError | None = None
        try:
            request = provider.heartbeat_request(claim, session.server_clock.now(sent_wall), credentials)
            response = self._transport.send(provider.endpoint, request, sent_at + budget)
            assigned = provider.parse_heartbeat(response)
        except TransportError as exc:
            failure = ProviderError(exc.code, exc.message, retry=Retry.FAST)
        except ProviderError as exc:
            failure = exc
        received = self._clock.monotonic()
        if response is not None:
            self._observe_clock(session, response, sent_wall)
        with self._cond:
            session.in_flight = False
            if self._stopping:
                return
            session.counters.beats += 1
            if failure is None and assigned is not None:
                self._on_success(session, assigned, sent_at, received)
            elif failure is not None:
                self._on_failure(session, failure, received)
            if session.beat_soon:
                session.beat_soon = False
                self._push(BEAT, received, session)

    def _on_success(self, session: Session, assigned: ShardMap, sent_at: float, received: float) -> None:
        if session.last_error is not None:
            log.info("group %s: heartbeat ok again", session.identity.group)
            session.last_error = None
        events = session.membership.on_success(assigned, sent_at, received)
        latency_ms = (received - sent_at) * 1000
        for event in events:
            self._emit_event(session, event, latency_ms)
        if session.membership.lease.expires_at is not None:
            self._push(LEASE, session.membership.lease.expires_at, session)
        self._push(BEAT, session.pacer.after_success(received), session)

    def _on_failure(self, session: Session, failure: ProviderError, received: float) -> None:
        session.counters.failures += 1
        if failure.retry is Retry.REJOIN:
            lost = session.membership.drop(ms.CONSUMER_UNKNOWN)
            if lost is not None:
                self._emit_event(session, lost)
        due = session.pacer.after_failure(received, failure.retry)
        streak = session.pacer.streak
        level = logging.WARNING if streak & (streak - 1) == 0 else logging.DEBUG
        log.log(
            level,
            "group %s: heartbeat failed (%s: %s; attempt %d), retrying in %.2fs",
            session.identity.group,
            failure.code,
            failure.message,
            streak,
            due - received,
        )
        session.last_error = failure.code
        self._writer.emit(
            records.error(
                session.identity,
                self._clock.instant(),
                failure.code,
                failure.message,
                failure.status,
                failure.request_id,
                due - received,
            )
        )
        self._push(BEAT, due, session)

    def _observe_clock(self, session: Session, response: HttpResponse, sent_wall: float) -> None:
        date = response.headers.get("date")
        if not date:
            return
        try:
            server = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        with self._cond:
            before = session.server_clock.offset
            offset = session.server_clock.observe(server, sent_wall, self._clock.wall())
        if abs(offset) > WARN_ABOVE and abs(before) <= WARN_ABOVE:
            log.warning(
                "group %s: this host's clock is %.0fs %s the server's; signing with corrected time",
                session.identity.group,
                abs(offset),
                "behind" if offset > 0 else "ahead of",
            )

    # -- records ------------------------------------------------------------------------------------

    def _emit_event(self, session: Session, event: ms.Event, latency_ms: float | None = None) -> None:
        record = records.from_event(session.identity, event, self._clock.instant(), latency_ms)
        on_written: Callable[[], None] | None = None
        if isinstance(event, ms.AssignmentChanged):
            session.counters.changes += 1
            if event.revoked:
                on_written = self._releaser(session, event.revoked)
        elif isinstance(event, ms.Lost):
            session.counters.lost += 1
            log.warning(
                "group %s: %s; dropped %s",
                session.identity.group,
                event.reason.replace("_", " "),
                shards.to_json(event.lost),
            )
        self._writer.emit(record, on_written)

    def _releaser(self, session: Session, revoked: ShardMap) -> Callable[[], None]:
        """Once the revoke is on stdout, downstream has been told: stop listing those shards and beat
        now, so the server can hand them to their next owner without waiting a full interval."""

        def release() -> None:
            with self._cond:
                session.membership.release(revoked)
                if not self._stopping:
                    self._beat_now(session)

        return release


def run(config: Config, install_signals: bool = True) -> int:
    """The `shardbeat run` verb after configuration: guard stdout, start, block until stopped."""
    fd = guard_stdout()
    runner_box: list[Runner] = []
    writer = RecordWriter(fd, encoder_for(config.output.format), on_broken=lambda: _stop_quietly(runner_box))
    runner = Runner(config.groups, writer)
    runner_box.append(runner)
    if install_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: runner.stop())
        signal.signal(signal.SIGHUP, lambda *_: log.info("SIGHUP received: nothing to reload yet"))
    log.info(
        "shardbeat starting: %d group(s): %s",
        len(runner.sessions),
        ", ".join(f"{s.identity.provider}:{s.identity.group}/{s.identity.consumer}" for s in runner.sessions),
    )
    return runner.run()


def _stop_quietly(box: list[Runner]) -> None:
    log.info("stdout closed by the reader: stopping")
    if box:
        box[0].stop(quiet=True)
