"""A group's network calls as sans-I/O steps: each call is a generator that yields what to do next
(`Send` a request before a deadline, or `Pause` until a time) and is resumed with an `Answer`.

The driver (core/driver.py) builds calls and the shell (runtime/runner.py) carries them out over
whatever transport it has, so the same rules run on an event loop, on threads, or in a test that
answers each step by hand. Multi-request sequences (bootstrap, start positions, commit batches) read
as straight-line code here, without a thread or a socket.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Protocol

from shardbeat.core.checkpoints import (
    FROM_COMMITTED,
    OK,
    REFUSED,
    RETRY,
    Checkpoint,
    Position,
    ShardKey,
    Start,
    start_from,
)
from shardbeat.core.records import Instant
from shardbeat.core.schedule import Retry
from shardbeat.core.shards import ShardMap
from shardbeat.core.wire import (
    Credentials,
    Endpoint,
    GroupFound,
    HttpRequest,
    HttpResponse,
    ProviderError,
    Wire,
)

log = logging.getLogger("shardbeat.bootstrap")

GROUP_MISSING = "ConsumerGroupNotExist"
INVALID_CHECKPOINT = "InvalidCheckpoint"


@dataclass(frozen=True, slots=True)
class Send:
    """Send `request` to `endpoint` and read the whole answer before `deadline` (monotonic)."""

    endpoint: Endpoint
    request: HttpRequest
    deadline: float
    budget: float | None = None  # seconds, named in a timeout's message (heartbeats)


@dataclass(frozen=True, slots=True)
class Pause:
    """Resume no sooner than `until` (monotonic): spacing between reads the service throttles."""

    until: float


@dataclass(frozen=True, slots=True)
class Answer:
    """What a step came to: an HTTP answer or a failure (never both), at `at`; `server_date`: the
    answer's Date header as epoch seconds, when it had a sane one."""

    at: Instant
    response: HttpResponse | None = None
    failure: ProviderError | None = None
    server_date: float | None = None


Step = Send | Pause
Call = Generator[Step, Answer, None]


class Context(Protocol):
    """What a call needs of its group while it runs (the driver provides it)."""

    wire: Wire

    def server_now(self, wall: float) -> float: ...

    def observe(self, answer: Answer, sent_wall: float) -> None: ...


def exchange(
    ctx: Context, at: Instant, request: HttpRequest, deadline: float, budget: float | None = None
) -> Generator[Step, Answer, Answer]:
    """Send `request` (signed at `at`) and return its answer, its Date folded into the server clock."""
    answer = yield Send(ctx.wire.endpoint, request, deadline, budget)
    ctx.observe(answer, at.wall)
    return answer


def response_of(answer: Answer) -> HttpResponse:
    """The answer's HTTP response; raises its failure."""
    if answer.failure is not None:
        raise answer.failure
    assert answer.response is not None
    return answer.response


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """What bootstrap needs to know of the group's config."""

    label: str
    group: str
    timeout: float
    create: bool
    update: bool


@dataclass(frozen=True, slots=True)
class Bootstrapped:
    """done: heartbeats may start (timeout: the server's, when known); else `failure` says why not yet."""

    done: bool
    timeout: int | None = None
    failure: ProviderError | None = None
    at: Instant | None = None  # when it ended


def bootstrap(
    ctx: Context, plan: GroupPlan, credentials: Credentials, at: Instant, deadline: float
) -> Generator[Step, Answer, Bootstrapped]:
    """Does the consumer group exist, and with which timeout? Optionally create it or set its timeout.

    The server's timeout decides when our shards move, so we lease by it: when it differs from the
    configured one and `update` is off, we warn and use the server's. A read that is refused (a
    RAM/CAM policy may grant the heartbeat action alone) is not fatal: we warn and heartbeat with the
    configured timeout, and the heartbeat reports any real problem.
    """
    wire = ctx.wire
    now = at
    create = plan.create

    def call(build: Callable[[float, Credentials], HttpRequest]) -> Generator[Step, Answer, HttpResponse]:
        nonlocal now
        answer = yield from exchange(ctx, now, build(ctx.server_now(now.wall), credentials), deadline)
        now = answer.at
        return response_of(answer)

    label = plan.label
    try:
        while True:
            found: GroupFound | None = wire.parse_describe_group(
                (yield from call(wire.describe_group_request))
            )
            if found is not None:
                break
            if not create:
                missing = ProviderError(
                    GROUP_MISSING,
                    f"consumer group {plan.group} does not exist; create it or set create_group: true",
                    retry=Retry.SLOW,
                )
                return Bootstrapped(False, failure=missing, at=now)
            timeout = whole_seconds(plan.timeout)
            try:
                made = yield from call(functools.partial(wire.setup_group_request, timeout, True))
                wire.parse_setup_group(made)
            except ProviderError as exc:
                if "already" not in f"{exc.code} {exc.message}".lower():
                    raise
                create = False  # another node created it between our read and our create: read it again
                continue
            log.warning("%s: created consumer group with timeout %ds", label, timeout)
            return Bootstrapped(True, timeout, at=now)
        if found.reported_timeout is not None:
            log.warning(
                "%s: the server reports a group timeout of %ds; leasing by at most %ds",
                label,
                found.reported_timeout,
                found.timeout,
            )
        if found.timeout == plan.timeout:
            log.info("%s: consumer group found (timeout %ds, %s)", label, found.timeout, found.detail)
            return Bootstrapped(True, found.timeout, at=now)
        if plan.update:
            timeout = whole_seconds(plan.timeout)
            wire.parse_setup_group(
                (yield from call(lambda t, c: wire.setup_group_request(timeout, False, t, c)))
            )
            log.warning("%s: consumer group timeout changed from %ds to %ds", label, found.timeout, timeout)
            return Bootstrapped(True, timeout, at=now)
        log.warning(
            "%s: the consumer group's timeout is %ds on the server but %gs here; leasing by the server's "
            "(set timeout to match, or update_group: true to change the server's)",
            label,
            found.timeout,
            plan.timeout,
        )
        return Bootstrapped(True, found.timeout, at=now)
    except ProviderError as exc:
        if exc.retry is Retry.SLOW and not exc.credentials_rejected:
            log.warning(
                "%s: cannot check the consumer group (%s: %s); heartbeating with the configured timeout",
                label,
                exc.code,
                exc.message,
            )
            return Bootstrapped(True, None, at=now)
        return Bootstrapped(False, failure=exc, at=now)


def whole_seconds(seconds: float) -> int:
    """Services take whole seconds; round up so the server never drops us before our lease ends."""
    whole = int(seconds)
    return whole if whole == seconds else whole + 1


class OutOfTime(Exception):
    """No time left before the deadline for the next read."""


def fetch_positions(
    ctx: Context,
    credentials: Credentials,
    wanted: ShardMap,
    start: Start,
    at: Instant,
    deadline: float,
) -> Generator[Step, Answer, tuple[dict[ShardKey, Position], ProviderError | None, Instant]]:
    """Each shard's committed checkpoint, else the position of `start` in it, paced by the provider's
    `position_spacing`. Returns what could be read before `deadline`, the last failure (None when all
    were read), and the instant it ended."""
    wire = ctx.wire
    positions: dict[ShardKey, Position] = {}
    failure: ProviderError | None = None
    now = at
    sent = 0

    def read(build: Callable[[float], HttpRequest]) -> Generator[Step, Answer, HttpResponse]:
        nonlocal now, sent
        if sent and wire.position_spacing > 0:
            resumed = yield Pause(min(now.mono + wire.position_spacing, deadline))
            now = resumed.at
        if now.mono >= deadline:
            raise OutOfTime
        sent += 1
        answer = yield from exchange(ctx, now, build(ctx.server_now(now.wall)), deadline)
        now = answer.at
        return response_of(answer)

    out_of_time = ProviderError(
        "Timeout", "no time left to read start positions for this assignment", retry=Retry.FAST
    )
    for topic, ids in wire.committed_lookups(wanted):
        try:
            response = yield from read(
                functools.partial(wire.committed_request, topic, ids, start, credentials=credentials)
            )
            committed = wire.parse_committed(topic, ids, response)
        except OutOfTime:
            failure = out_of_time
            continue
        except ProviderError as exc:
            failure = exc
            continue
        for shard, value in committed.items():
            if value is not None:
                positions[(topic, shard)] = Position(value, FROM_COMMITTED)
                continue
            try:
                response = yield from read(
                    functools.partial(wire.position_request, topic, shard, start, credentials=credentials)
                )
                positions[(topic, shard)] = Position(
                    wire.parse_position(topic, shard, response), start_from(start)
                )
            except OutOfTime:
                failure = out_of_time
            except ProviderError as exc:
                failure = exc
    return positions, failure, now


def outcome_of(failure: ProviderError) -> str:
    """A failed commit: retry passing faults (network, 5xx, throttling, a stale signature time);
    drop the value on anything the server means (ConsumerNotMatch, bad cursor, permissions)."""
    return RETRY if failure.retry in (Retry.FAST, Retry.RESIGN) else REFUSED


CommitFailures = list[tuple[dict[ShardKey, Checkpoint], ProviderError]]


def send_commit(
    ctx: Context,
    credentials: Credentials,
    values: Mapping[ShardKey, Checkpoint],
    still_held: Callable[[ShardKey, Instant], bool],
    at: Instant,
    deadline: float,
) -> Generator[Step, Answer, tuple[dict[ShardKey, str], CommitFailures, Instant]]:
    """Send `values` in the provider's batches, one request at a time.

    `still_held` is asked right before each request: a shard lost meanwhile is not sent (RETRY, so the
    book drops it at the next take as no longer held). Returns each key's outcome, the failures with
    the values they hit, and the instant it ended.
    """
    wire = ctx.wire
    outcomes: dict[ShardKey, str] = {}
    failures: CommitFailures = []
    now = at
    for batch in wire.commit_batches(values):
        if not all(still_held(key, now) for key in batch):
            outcomes.update(dict.fromkeys(batch, RETRY))
            continue
        try:
            request = wire.commit_request(batch, ctx.server_now(now.wall), credentials)
        except ValueError as exc:  # a value the provider cannot put on the wire (checked at offer too)
            failures.append((batch, ProviderError(INVALID_CHECKPOINT, str(exc), retry=Retry.SLOW)))
            outcomes.update(dict.fromkeys(batch, REFUSED))
            continue
        answer = yield from exchange(ctx, now, request, deadline)
        now = answer.at
        try:
            wire.parse_commit(response_of(answer))
        except ProviderError as exc:
            outcomes.update(dict.fromkeys(batch, outcome_of(exc)))
            failures.append((batch, exc))
            continue
        outcomes.update(dict.fromkeys(batch, OK))
    return outcomes, failures, now


__all__ = [
    "Answer",
    "Bootstrapped",
    "Call",
    "Context",
    "GroupPlan",
    "Pause",
    "Send",
    "Step",
    "bootstrap",
    "fetch_positions",
    "outcome_of",
    "send_commit",
    "whole_seconds",
]
