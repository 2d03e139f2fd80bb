"""One consumer group's rules, sans-I/O: `GroupDriver`, in the spirit of h11's Connection and
kafka-python's Heartbeat.

It owns the group's membership, lease, pacing, bootstrap state, server clock offset, pending acks and
checkpoints. Data in, data out: the shell asks `next_due()`, calls `poll(at)` when that time comes,
carries out the calls it hands over (`take()`: core/calls.py generators) and feeds their answers back
into them; it writes the records the driver hands over, in order. No threads, no sockets, no clock
reads: every entry point is given the time (`Instant`), so each rule is a step test on a fake clock.

The rules, where they live:
- lost first: `_watchdog` runs before anything an answer, a deadline or a control op says;
- an empty claim after a loss: core/membership.py;
- release after the revoke is written (`Emit.release`), or on downstream's ack within a grace;
- bootstrap before the first heartbeat (core/calls.py `bootstrap`), then the interval fitted to the
  server's timeout (core/interval_fit.py);
- on-demand beats coalesced and spaced (core/on_demand.py); the fixed-rate grid and backoff
  (core/schedule.py); checkpoints (core/group_checkpoints.py).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Generator

from shardbeat.core import group_figures, records, shards
from shardbeat.core import membership as ms
from shardbeat.core.calls import Answer, Call, Step, exchange, fetch_positions
from shardbeat.core.checkpoints import Position, ShardKey
from shardbeat.core.error_summary import ErrorSummary
from shardbeat.core.group_bootstrap import BootstrapRules
from shardbeat.core.group_checkpoints import CheckpointRules, GroupCheckpoints
from shardbeat.core.group_figures import Counters, GroupSnapshot
from shardbeat.core.group_release import ReleaseRules
from shardbeat.core.group_settings import Emit, Keys, Settings
from shardbeat.core.histogram import Histogram
from shardbeat.core.lease import Lease
from shardbeat.core.on_demand import OnDemandBudget
from shardbeat.core.records import Identity, Instant, Record
from shardbeat.core.schedule import Pacer, Retry, call_budget
from shardbeat.core.shard_text import shard_text
from shardbeat.core.shards import ShardMap
from shardbeat.core.skew import WARN_ABOVE, ServerClock
from shardbeat.core.wire import ProviderError, Wire

log = logging.getLogger("shardbeat.runner")


_SLOTS = (
    "_beat_call _calls _out awaiting_ack beat_soon bootstrapped checkpoints config counters "
    "credentials due_at error_summary had_key identity in_flight index interval key_wait_until "
    "last_error last_failure last_latency last_sent latency membership on_demand on_demand_budget "
    "pacer records_closed scope server_clock stopping timeout wire"
)


class GroupDriver(BootstrapRules, ReleaseRules, CheckpointRules):
    # Slots: thousands of drivers in one process; a dict per driver cost ~1.3 KB more each.
    __slots__ = tuple(_SLOTS.split())

    def __init__(
        self,
        index: int,
        config: Settings,
        wire: Wire,
        credentials: Keys,
        grid_start: float,
        first_beat: float,
        rng: random.Random | None = None,
        scope: str = "",
    ) -> None:
        self.index = index
        self.config = config
        self.wire = wire
        self.scope = scope  # SLS "project/logstore", CLS "region/logset_id": tells same-named groups apart
        self.identity = Identity(config.provider, config.consumer_group, config.consumer)
        self.credentials = credentials
        self.interval = config.heartbeat_interval
        self.timeout = config.timeout
        self.membership = ms.Membership(Lease(config.timeout, config.margin))
        self.pacer = Pacer.create(config.heartbeat_interval, grid_start, rng)
        self.server_clock = ServerClock()
        self.counters = Counters()
        self.error_summary = ErrorSummary()
        self.latency = Histogram()
        self.checkpoints = GroupCheckpoints.create(config.checkpoints) if config.checkpoints else None
        self.bootstrapped = False
        self.in_flight = False  # a beat or bootstrap call is out (never two)
        self.beat_soon = False  # a beat was asked for while one was in flight
        self.on_demand = False  # an on-demand beat is owed once the one in flight is answered
        self.on_demand_budget: OnDemandBudget | None = None
        self.due_at = first_beat  # the next beat (inf while one is in flight)
        self.last_sent: float | None = None  # monotonic send time of the last heartbeat
        self.last_error: str | None = None  # the failure now in progress; None once a call succeeds
        self.last_failure: tuple[str, str, float] | None = None  # (code, message, monotonic): `status`
        self.last_latency: float | None = None  # seconds, of the last answered heartbeat
        self.key_wait_until: float | None = None  # waiting silently for a credential source's key
        self.had_key = False
        # release: ack -> revoked shards waiting for downstream's ack, with the monotonic time we give up
        self.awaiting_ack: dict[tuple[str, int], float] = {}
        self.stopping = False  # the shell is stopping: nothing new starts, late answers change nothing
        self.records_closed = False  # `stopped` is written: nothing may follow it
        self._out: list[Emit] = []
        self._calls: list[Call] = []
        self._beat_call: Call | None = None  # the beat or bootstrap call out, if any

    # -- the shell's side ---------------------------------------------------------------------------

    def take(self) -> tuple[list[Emit], list[Call]]:
        """Records to write (in order) and calls to start, since the last take."""
        out, calls = self._out, self._calls
        if out:
            self._out = []
        if calls:
            self._calls = []
        return out, calls

    def next_due(self) -> float:
        """When `poll` has something to do: a beat, the lease's end, an ack's grace, a commit."""
        due = self.due_at if not self.in_flight and not self.stopping else float("inf")
        expires = self.membership.lease.expires_at
        if expires is not None and expires < due:
            due = expires
        if self.awaiting_ack:
            due = min(due, min(self.awaiting_ack.values()))
        commit = self.commit_due()
        return due if commit is None else min(due, commit)

    def poll(self, at: Instant) -> None:
        """Act on whatever is due at `at`: the lease watchdog first, then acks, a beat, a commit."""
        now = at.mono
        self._watchdog(at)
        if self.awaiting_ack:
            self._ack_deadline(at)
        if self.stopping:
            return
        if not self.in_flight and self.due_at <= now:
            self.in_flight = True
            self.due_at = float("inf")
            self._beat_call = self._heartbeat(at) if self.bootstrapped else self._bootstrap(at)
            self._calls.append(self._beat_call)
        self.poll_commit(at)

    def recover(self, call: Call, at: Instant) -> None:
        """A call ended in an internal error (a bug, logged by the shell): free its slot and go on."""
        if call is self._beat_call:
            self.in_flight = False
            self.due_at = min(self.due_at, at.mono + self.interval)
        elif self.checkpoints is not None and self.checkpoints.sending:
            self.checkpoints.book.settle({}, at.mono)
            self.checkpoints.sending = False

    # -- context for calls (core/calls.Context) --------------------------------------------------------

    def server_now(self, wall: float) -> float:
        return self.server_clock.now(wall)

    def observe(self, answer: Answer, sent_wall: float) -> None:
        """Fold an answer's Date into the server clock offset (warn once when it gets large)."""
        if answer.server_date is None:
            return
        before = self.server_clock.offset
        offset = self.server_clock.observe(answer.server_date, sent_wall, answer.at.wall)
        if abs(offset) > WARN_ABOVE and abs(before) <= WARN_ABOVE:
            log.warning(
                "%s: this host's clock is %.0fs %s the server's; signing with corrected time",
                self.config.label,
                abs(offset),
                "behind" if offset > 0 else "ahead of",
            )

    # -- heartbeats -----------------------------------------------------------------------------------

    def _heartbeat(self, at: Instant) -> Generator[Step, Answer, None]:
        sent_at = at.mono
        lease = self.membership.lease
        budget = call_budget(self.interval, lease.remaining(sent_at) if lease.valid(sent_at) else None)
        claim = self.membership.claim()
        wire = self.wire
        try:
            # The latest key (token included); while a refresh is on its way after the last key
            # expired, look again silently within the call's budget (never past the lease).
            credentials = self._keys(at, budget)
        except ProviderError as exc:
            self._beat_done(sent_at, at, None, exc)
            return
        if credentials is None:
            return
        self.last_sent = sent_at
        request = wire.heartbeat_request(claim, self.server_now(at.wall), credentials)
        answer = yield from exchange(self, at, request, sent_at + budget, budget)
        received = answer.at
        assigned: ShardMap | None = None
        failure = answer.failure
        if failure is None:
            assert answer.response is not None
            try:
                assigned = wire.parse_heartbeat(answer.response)
            except ProviderError as exc:
                failure = exc
        positions: dict[ShardKey, Position] | None = None
        applied = received
        group = self.checkpoints
        if assigned is not None and group is not None and not self.stopping:
            wanted = self.starts_to_fetch(assigned, received.mono)
            if wanted:
                deadline = self.start_deadline(sent_at, received.mono)
                positions, group.start_failure, applied = yield from fetch_positions(
                    self, credentials, wanted, group.config.start, received, deadline
                )
            else:
                positions = {}
        self._beat_done(sent_at, received, assigned, failure, positions, applied)

    def _beat_done(
        self,
        sent_at: float,
        received: Instant,
        assigned: ShardMap | None,
        failure: ProviderError | None,
        positions: dict[ShardKey, Position] | None = None,
        applied: Instant | None = None,
    ) -> None:
        self.in_flight = False
        if self.stopping:
            return
        # A lease that ran out while this call was in flight (or the process was frozen) is reported
        # before anything this answer says, whatever it says.
        self._watchdog(received)
        self.counters.beats += 1
        if assigned is not None:
            self._on_success(assigned, sent_at, received, positions, applied or received)
        elif failure is not None:
            self._on_failure(failure, received)
        if self.beat_soon:
            self.beat_soon = False
            self.due_at = min(self.due_at, received.mono)
        if self.on_demand:
            self.on_demand = False
            self.ask_beat(received.mono, self.on_demand_budget)

    def _on_success(
        self,
        assigned: ShardMap,
        sent_at: float,
        received: Instant,
        positions: dict[ShardKey, Position] | None,
        applied: Instant,
    ) -> None:
        """`positions`: start positions read for this answer; `applied`: when they were read."""
        if self.last_error is not None:
            streak = self.error_summary.recovered(received.mono)
            after = f" after {streak.failures} failed call(s) over {streak.duration:.1f}s" if streak else ""
            log.info("%s: heartbeat ok again%s", self.config.label, after)
            self.last_error = None
        events = self.membership.on_success(assigned, sent_at, applied.mono)
        latency = received.mono - sent_at
        self.latency.observe(latency)
        self.last_latency = latency
        for event in events:
            self._emit_event(event, applied, latency * 1000, positions)
        if positions is not None:
            self.owed_starts(positions, applied)
        self.due_at = self.pacer.after_success(received.mono)

    def _on_failure(self, failure: ProviderError, at: Instant, source: str = "heartbeat") -> None:
        now = at.mono
        self.counters.failures += 1
        if failure.credentials_rejected:
            self.credentials.refresh()  # a rotated key may be waiting in the credentials file
        if failure.retry is Retry.REJOIN:
            lost = self.membership.drop(ms.CONSUMER_UNKNOWN)
            if lost is not None:
                self._emit_event(lost, at)
        due = self.pacer.after_failure(now, failure.retry)
        verdict = self.error_summary.failed(f"{source}:{failure.code}", now)
        log.log(
            logging.WARNING if verdict.log else logging.DEBUG,
            "%s: %s failed (%s: %s; attempt %d), retrying in %.2fs%s",
            self.config.label,
            source,
            failure.code,
            failure.message,
            self.pacer.streak,
            due - now,
            f" ({verdict.repeats} more times in the last {verdict.since:.0f}s)" if verdict.repeats else "",
        )
        self.last_error = failure.code
        self.last_failure = (failure.code, failure.message, now)
        self.emit(
            records.error(
                self.identity,
                at,
                failure.code,
                failure.message,
                failure.status,
                failure.request_id,
                due - now,
                source,
            )
        )
        self.due_at = due

    # -- the lease ------------------------------------------------------------------------------------

    def _watchdog(self, at: Instant) -> None:
        lost = self.membership.expire(at.mono)
        if lost is not None:
            self._emit_event(lost, at)

    def held_now(self, at: Instant) -> ShardMap:
        """Shards held under a valid lease right now (assigned or releasing); the watchdog runs first."""
        self._watchdog(at)
        membership = self.membership
        return membership.claim() if membership.lease.valid(at.mono) else shards.EMPTY

    # -- records --------------------------------------------------------------------------------------

    def emit(self, record: Record, release: ShardMap | None = None) -> None:
        if self.records_closed:  # `stopped` was the group's last record: a late op's refusal is not
            return
        self._out.append(Emit(record, release))

    def _emit_event(
        self,
        event: ms.Event,
        at: Instant,
        latency_ms: float | None = None,
        positions: dict[ShardKey, Position] | None = None,
    ) -> None:
        start = None
        release: ShardMap | None = None
        if isinstance(event, ms.AssignmentChanged):
            start = self.start_for(event.added, event.epoch, positions or {})
            self.counters.changes += 1
            log.info(
                "%s: assignment (epoch %d): added %s, revoked %s; holds %s",
                self.config.label,
                event.epoch,
                shard_text(event.added, False),
                shard_text(event.revoked, False),
                shard_text(event.assigned, False),
            )
            if event.revoked:
                if self.config.release == "ack":
                    self._await_ack(event.revoked, at.mono)
                else:
                    release = event.revoked  # once the revoke is on stdout, downstream has been told
        elif isinstance(event, ms.Lost):
            self.counters.lost += 1
            self.awaiting_ack.clear()
            log.log(
                logging.INFO if event.reason == ms.STOPPED else logging.WARNING,
                "%s: %s; dropped %s",
                self.config.label,
                event.reason.replace("_", " "),
                shard_text(event.lost, False),
            )
        self.emit(records.from_event(self.identity, event, at, latency_ms, start), release)
        if isinstance(event, ms.Lost):
            self.checkpoints_lost(at)  # after the `lost` record: it must come first

    # -- stop -----------------------------------------------------------------------------------------

    def finish(self, at: Instant) -> None:
        """A clean stop: `lost` for what is held, then `stopped`."""
        self.stopping = True
        lost = self.membership.drop(ms.STOPPED)
        if lost is not None:
            self._emit_event(lost, at)
        self.emit(records.stopped(self.identity, at, self.membership.epoch))
        self.records_closed = True

    def abandon(self) -> None:
        """Records can no longer be written: drop everything at once, silently (no one to tell)."""
        self.stopping = True
        self.membership.drop(ms.STOPPED)
        self.awaiting_ack.clear()
        self._out.clear()

    def credential_failure(self, at: Instant, message: str, retry_in: float) -> None:
        """The group's credential source failed to refresh."""
        self.emit(
            records.error(
                self.identity, at, "CredentialRefreshFailed", message, None, None, retry_in, "credentials"
            )
        )

    # -- figures --------------------------------------------------------------------------------------

    def status_record(self, at: Instant, output_dropped: int) -> Record:
        return group_figures.status_record(self, at, output_dropped)

    def snapshot(self, now: float) -> GroupSnapshot:
        return group_figures.snapshot(self, now)

    def matches(self, group: str | None, provider: str | None, consumer: str | None) -> bool:
        who = self.identity
        return (
            (group is None or group == who.group)
            and (provider is None or provider == who.provider)
            and (consumer is None or consumer == who.consumer)
        )
