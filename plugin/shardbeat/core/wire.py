"""The plain data a group's calls trade in: requests, answers, keys and classified failures.

Shared by the driver (core/driver.py), which decides what to send, and the providers, which turn it
into bytes: so the arrow points inward (providers -> core), and a shell can carry any of it over any
transport. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from shardbeat.core.checkpoints import Checkpoint, ShardKey, Start
from shardbeat.core.redaction import register_secret
from shardbeat.core.schedule import Retry
from shardbeat.core.shards import ShardMap


@dataclass(frozen=True, slots=True)
class Credentials:
    """Provider-neutral key pair: SLS access_key_id/secret/security_token, CLS secret_id/key/token."""

    key_id: str
    secret: str = field(repr=False)
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Whichever source made them, the secret parts are masked wherever text leaves the process.
        register_secret(self.secret)
        register_secret(self.token)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect, and what to call the server in the Host header."""

    scheme: str  # "http" | "https"
    host: str  # connect host (name or IP literal, no brackets)
    port: int
    host_header: str  # e.g. my-project.cn-hangzhou.log.aliyuncs.com or cls.tencentcloudapi.com:8080


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str  # path plus query, exactly as on the request line
    # Kept out of repr: headers carry signatures and STS/session tokens.
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # names lower-case
    body: bytes


class ProviderError(Exception):
    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry: Retry,
        status: int | None = None,
        request_id: str | None = None,
        credentials_rejected: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        # The server refused our key or token (not the request): worth re-reading rotated credentials.
        self.credentials_rejected = credentials_rejected
        self.message = message
        self.retry = retry
        self.status = status
        self.request_id = request_id


class GroupFound(Protocol):
    """A consumer group's settings as the server has them (providers/base.py ServerGroup)."""

    @property
    def timeout(self) -> int: ...  # what to lease by (clamped)
    @property
    def reported_timeout(self) -> int | None: ...  # the server's own figure, when it was clamped
    @property
    def detail(self) -> str: ...  # provider-specific settings worth logging


class Wire(Protocol):
    """One consumer group on one service, as far as the wire is concerned (what the driver needs of a
    provider module; providers/base.py Provider narrows the group read to its ServerGroup)."""

    name: str  # "sls" | "cls"
    endpoint: Endpoint
    topics: tuple[str, ...]  # logstore name (SLS) or TopicIDs (CLS): the keys of every ShardMap
    # Seconds between two position reads (GetCheckPoint/GetCursor, DescribeConsumerOffsets) of one group:
    # CLS throttles per account, and its official consumer pauses between these calls too.
    position_spacing: float

    def heartbeat_request(self, claim: ShardMap, now: float, credentials: Credentials) -> HttpRequest:
        """Signed heartbeat listing `claim`; `now` is server-corrected wall time in epoch seconds."""
        ...

    def parse_heartbeat(self, response: HttpResponse) -> ShardMap:
        """The assignment in a heartbeat answer; raises ProviderError for anything else."""
        ...

    # Group bootstrap: read the group's server-side settings, create or update it when asked to.

    def describe_group_request(self, now: float, credentials: Credentials) -> HttpRequest: ...

    def parse_describe_group(self, response: HttpResponse) -> GroupFound | None:
        """This group's settings; None when the group does not exist; ProviderError otherwise."""
        ...

    def setup_group_request(
        self, timeout: int, create: bool, now: float, credentials: Credentials
    ) -> HttpRequest:
        """Create the group (create=True) or set its timeout (create=False)."""
        ...

    def parse_setup_group(self, response: HttpResponse) -> None:
        """Raises ProviderError unless the create/update succeeded."""
        ...

    # Checkpoints: start positions (committed, else the position for `start`) and fenced commits.

    def checkpoint_problem(self, value: object) -> str | None:
        """Why `value` cannot be a checkpoint of this service (None: it can)."""
        ...

    def committed_lookups(self, held: ShardMap) -> list[tuple[str, tuple[int, ...]]]:
        """How to split reading the committed checkpoints of `held`: (topic, shard ids) per request."""
        ...

    def committed_request(
        self, topic: str, ids: tuple[int, ...], start: Start, now: float, credentials: Credentials
    ) -> HttpRequest: ...

    def parse_committed(
        self, topic: str, ids: tuple[int, ...], response: HttpResponse
    ) -> dict[int, Checkpoint | None]:
        """Each shard's committed checkpoint; None for a shard that never had one."""
        ...

    def position_request(
        self, topic: str, shard: int, start: Start, now: float, credentials: Credentials
    ) -> HttpRequest:
        """Where `start` ("begin", "end", unix seconds) is in the shard."""
        ...

    def parse_position(self, topic: str, shard: int, response: HttpResponse) -> Checkpoint: ...

    def commit_batches(self, values: Mapping[ShardKey, Checkpoint]) -> list[dict[ShardKey, Checkpoint]]:
        """How to split a commit into requests (sent one after the other)."""
        ...

    def commit_request(
        self, values: Mapping[ShardKey, Checkpoint], now: float, credentials: Credentials
    ) -> HttpRequest:
        """Commit as this consumer; the server refuses shards it does not own (SLS forceSuccess=false)."""
        ...

    def parse_commit(self, response: HttpResponse) -> None:
        """Raises ProviderError unless the commit was accepted."""
        ...
