"""The network side of checkpoints: reading start positions and sending commit batches.

No locks and no records here: the runner decides what to fetch or send (under its lock, from the
membership and the CommitBook) and these functions make the calls, each one re-signed with a fresh
time and bounded by a deadline the caller derives from the lease.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shardbeat.config.model import CheckpointConfig
from shardbeat.core.checkpoints import (
    FROM_COMMITTED,
    OK,
    REFUSED,
    RETRY,
    Checkpoint,
    CommitBook,
    Position,
    ShardKey,
    start_from,
)
from shardbeat.core.schedule import Retry
from shardbeat.core.shards import ShardMap
from shardbeat.providers.base import Credentials, Endpoint, HttpRequest, HttpResponse, Provider, ProviderError
from shardbeat.runtime.transport import Transport, TransportError

START_FETCH_SECONDS = 2.0  # longest an assignment record waits for start positions
NOT_OWNER = "NotOwner"
CHECKPOINTS_OFF = "CheckpointsOff"
STALE_EPOCH = "StaleEpoch"
INVALID_CHECKPOINT = "InvalidCheckpoint"


@dataclass(eq=False)
class GroupCheckpoints:
    """One group's checkpoint state, mutated under the runner's lock."""

    config: CheckpointConfig
    book: CommitBook
    missing: set[ShardKey] = field(default_factory=set)  # assigned shards whose start is still owed
    sending: bool = False  # a commit job is queued or running (never two per group)
    version: int = 0  # the current COMMIT entry on the timeline (older ones are skipped)
    queued_at: float | None = None  # when the current COMMIT entry is due (None: none queued)
    added_at: dict[ShardKey, int] = field(default_factory=dict)  # the epoch each held shard was added in
    committed: int = 0  # values the server accepted (the `status` record's counters)
    dropped: int = 0  # values given up: refused, out of attempts, or their shard lost before sending
    start_failure: ProviderError | None = None  # the last start read failed: reported after the records

    @classmethod
    def create(cls, config: CheckpointConfig) -> GroupCheckpoints:
        return cls(config, CommitBook(config.commit_interval))


def _failure(exc: TransportError | ProviderError, endpoint: Endpoint) -> ProviderError:
    if isinstance(exc, TransportError):  # named as a heartbeat's: the endpoint, the step and the fix
        return ProviderError(exc.code, exc.describe(endpoint), retry=Retry.FAST)
    return exc


Observe = Callable[[HttpResponse, float], None]  # an answer, and the wall time its request was sent


class Caller:
    """Sends one request at a time before `deadline`, re-signed with a fresh time, and shows every
    answer to `observe` (the server's Date corrects our clock after a stale-signature refusal)."""

    def __init__(
        self,
        provider: Provider,
        transport: Transport,
        server_now: Callable[[], float],
        wall: Callable[[], float],
        observe: Observe,
        deadline: float,
    ) -> None:
        self.provider = provider
        self.transport = transport
        self.server_now = server_now
        self.wall = wall
        self.observe = observe
        self.deadline = deadline
        self.sent = 0

    def call(self, build: Callable[[float], HttpRequest]) -> HttpResponse:
        sent_wall = self.wall()
        self.sent += 1
        request = build(self.server_now())
        response = self.transport.send(self.provider.endpoint, request, self.deadline)
        self.observe(response, sent_wall)
        return response


def fetch_positions(
    caller: Caller,
    credentials: Credentials,
    monotonic: Callable[[], float],
    shards: ShardMap,
    config: CheckpointConfig,
    pause: Callable[[float], object] = time.sleep,
) -> tuple[dict[ShardKey, Position], ProviderError | None]:
    """Each shard's committed checkpoint, else the position of `config.start` in it.

    Returns what could be read before the caller's deadline, and the last failure (None when all
    were read).
    """
    provider = caller.provider
    start = config.start
    positions: dict[ShardKey, Position] = {}
    failure: ProviderError | None = None

    def check_time() -> None:
        """Before each read: pace them (provider.position_spacing) and keep to the deadline."""
        if caller.sent and provider.position_spacing > 0:
            pause(min(provider.position_spacing, max(0.0, caller.deadline - monotonic())))
        if monotonic() >= caller.deadline:
            raise TransportError("Timeout", "no time left to read start positions for this assignment")

    for topic, ids in provider.committed_lookups(shards):
        try:
            check_time()
            response = caller.call(
                functools.partial(provider.committed_request, topic, ids, start, credentials=credentials)
            )
            committed = provider.parse_committed(topic, ids, response)
        except (TransportError, ProviderError) as exc:
            failure = _failure(exc, provider.endpoint)
            continue
        for shard, value in committed.items():
            if value is not None:
                positions[(topic, shard)] = Position(value, FROM_COMMITTED)
                continue
            try:
                check_time()
                response = caller.call(
                    functools.partial(provider.position_request, topic, shard, start, credentials=credentials)
                )
                positions[(topic, shard)] = Position(
                    provider.parse_position(topic, shard, response), start_from(start)
                )
            except (TransportError, ProviderError) as exc:
                failure = _failure(exc, provider.endpoint)
    return positions, failure


def outcome_of(failure: ProviderError) -> str:
    """A failed commit: retry passing faults (network, 5xx, throttling, a stale signature time);
    drop the value on anything the server means (ConsumerNotMatch, bad cursor, permissions)."""
    return RETRY if failure.retry in (Retry.FAST, Retry.RESIGN) else REFUSED


def send_commit(
    caller: Caller,
    credentials: Credentials,
    values: Mapping[ShardKey, Checkpoint],
    still_held: Callable[[ShardKey], bool],
) -> tuple[dict[ShardKey, str], list[tuple[dict[ShardKey, Checkpoint], ProviderError]]]:
    """Send `values` in the provider's batches, one request at a time.

    `still_held` is asked right before each request: a shard lost meanwhile is not sent (RETRY, so
    the book drops it at the next take as no longer held). Returns each key's outcome and the
    failures with the values they hit.
    """
    provider = caller.provider
    outcomes: dict[ShardKey, str] = {}
    failures: list[tuple[dict[ShardKey, Checkpoint], ProviderError]] = []
    for batch in provider.commit_batches(values):
        if not all(still_held(key) for key in batch):
            outcomes.update(dict.fromkeys(batch, RETRY))
            continue
        try:
            response = caller.call(functools.partial(provider.commit_request, batch, credentials=credentials))
            provider.parse_commit(response)
        except (TransportError, ProviderError) as exc:
            failure = _failure(exc, provider.endpoint)
            outcomes.update(dict.fromkeys(batch, outcome_of(failure)))
            failures.append((batch, failure))
            continue
        except ValueError as exc:  # a value the provider cannot put on the wire (checked at offer too)
            failure = ProviderError(INVALID_CHECKPOINT, str(exc), retry=Retry.SLOW)
            outcomes.update(dict.fromkeys(batch, REFUSED))
            failures.append((batch, failure))
            continue
        outcomes.update(dict.fromkeys(batch, OK))
    return outcomes, failures
