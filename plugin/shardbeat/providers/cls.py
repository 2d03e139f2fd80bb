"""Tencent Cloud CLS (API 3.0, version 2020-10-16): consumer-group requests and answers.

Pure: builds HttpRequest values and reads HttpResponse values. Signing is TC3-HMAC-SHA256 (tc3.py);
its functions are re-exported here because the CLS emulator verifies requests with them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from shardbeat import __version__
from shardbeat.core.checkpoints import Checkpoint, ShardKey, Start
from shardbeat.core.shards import ShardMap, shard_map
from shardbeat.providers import cls_offsets as offsets
from shardbeat.providers import endpoint as endpoints
from shardbeat.providers import server_values
from shardbeat.providers.base import (
    Credentials,
    Endpoint,
    HttpRequest,
    HttpResponse,
    ProviderError,
    Retry,
    ServerGroup,
    find_group,
)
from shardbeat.providers.tc3 import (
    SIGNED_HEADERS,
    TC3_ALGORITHM,
    Tc3Authorization,
    authorization_tc3,
    canonical_request_tc3,
    format_authorization_tc3,
    parse_authorization_tc3,
    sha256_hex,
    signature_from_key_tc3,
    signature_tc3,
    signing_key_tc3,
    string_to_sign_tc3,
    utc_date,
)

__all__ = [
    "API_VERSION",
    "HTTP_ERROR",
    "INVALID_RESPONSE",
    "SIGNED_HEADERS",
    "TC3_ALGORITHM",
    "UNKNOWN_TOPIC",
    "ClsProvider",
    "Tc3Authorization",
    "authorization_tc3",
    "canonical_request_tc3",
    "error_from_response",
    "is_group_exists",
    "parse_authorization_tc3",
    "retry_for_code",
    "sha256_hex",
    "signature_tc3",
    "string_to_sign_tc3",
]

API_VERSION = "2020-10-16"
SERVICE = "cls"
CONTENT_TYPE = "application/json"
MAX_RESPONSE_BYTES = 4 << 20  # far above any consumer-group answer; refuse to parse more
MAX_PARTITION_ID = 2**63 - 1  # PartitionId is an int64 in the API (and must fit a msgpack integer)
USER_AGENT = f"shardbeat/{__version__}"
_CLIP = 200  # longest server-supplied text copied into an error message
# Consumer-group calls (SendConsumerHeartbeat, the offsets) per second per account (cls.md): the rest
# are answered RequestLimitExceeded. The one definition: the descriptor (cls_service.py) carries it.
CLS_RATE_LIMIT = 20.0

HEARTBEAT = "SendConsumerHeartbeat"
DESCRIBE_GROUPS = "DescribeConsumerGroups"
CREATE_GROUP = "CreateConsumerGroup"
MODIFY_GROUP = "ModifyConsumerGroup"
_ACTIONS = (
    HEARTBEAT, DESCRIBE_GROUPS, CREATE_GROUP, MODIFY_GROUP, offsets.DESCRIBE_OFFSETS, offsets.COMMIT_OFFSETS
)  # fmt: skip


# --- answers -----------------------------------------------------------------------------------

INVALID_RESPONSE = "InvalidResponse"
UNKNOWN_TOPIC = "UnknownTopic"
HTTP_ERROR = "HttpError"

# (code or dotted prefix, retry), first match wins; a prefix matches the code itself and code.*
_RETRY_BY_CODE: tuple[tuple[str, Retry], ...] = (
    ("AuthFailure.SignatureExpire", Retry.RESIGN),
    # Transient FailedOperation sub-codes, ahead of the FailedOperation prefix below.
    ("FailedOperation.Timeout", Retry.FAST),
    ("FailedOperation.ReadQpsLimit", Retry.FAST),
    ("RequestLimitExceeded", Retry.FAST),
    ("InternalError", Retry.FAST),
    ("ResourceUnavailable", Retry.FAST),
    ("AuthFailure", Retry.SLOW),
    ("OperationDenied", Retry.SLOW),
    ("InvalidParameter", Retry.SLOW),
    ("MissingParameter", Retry.SLOW),
    ("UnknownParameter", Retry.SLOW),
    ("UnauthorizedOperation", Retry.SLOW),
    ("ResourceNotFound", Retry.SLOW),
    ("FailedOperation", Retry.SLOW),
)


def retry_for_code(code: str) -> Retry:
    """How to react to a Response.Error code; codes we do not know wait for an operator (SLOW)."""
    for prefix, retry in _RETRY_BY_CODE:
        if code == prefix or code.startswith(prefix + "."):
            return retry
    return Retry.SLOW


def _clip(text: str) -> str:
    return server_values.text(text, _CLIP)


def _invalid(message: str, status: int, request_id: str | None = None) -> ProviderError:
    return ProviderError(INVALID_RESPONSE, message, retry=Retry.FAST, status=status, request_id=request_id)


def _decode(body: bytes) -> object:
    """The JSON value of `body`, or None when it is not JSON (JSON null is no valid answer either)."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


_request_id = server_values.request_id


def _server_error(answer: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(Code, Message) of Response.Error when it is well-formed."""
    error = answer.get("Error") if answer is not None else None
    if not isinstance(error, dict) or not isinstance(error.get("Code"), str):
        return None
    return _clip(error["Code"]), _clip(_text(error.get("Message")) or "")


def _answer(response: HttpResponse) -> dict[str, Any]:
    """The `Response` object of a successful answer; every other answer raises ProviderError."""
    status = response.status
    too_large = len(response.body) > MAX_RESPONSE_BYTES
    parsed = None if too_large else _decode(response.body)
    envelope = parsed.get("Response") if isinstance(parsed, dict) else None
    answer = envelope if isinstance(envelope, dict) else None
    request_id = _request_id(answer.get("RequestId")) if answer is not None else None
    server_error = _server_error(answer)
    if status != 200:  # the API answers 200 even for errors: anything else is a proxy or an outage
        said = f" ({server_error[0]}: {server_error[1]})" if server_error else ""
        said += server_values.redirect_note(status, response.headers)
        raise ProviderError(
            HTTP_ERROR, f"HTTP {status} instead of 200{said}", retry=Retry.FAST,
            status=status, request_id=request_id,
        )  # fmt: skip
    # Parameters (charset) are tolerated; another media type means someone else answered, unless
    # the body is a well-formed error (the official SDK reads errors under text/plain too): then
    # its code is what the operator needs to see, and it never grants anything.
    media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != CONTENT_TYPE and server_error is None:
        shown = _clip(response.headers.get("content-type", "none"))
        raise _invalid(f"Content-Type {shown!r}, expected {CONTENT_TYPE}", status, request_id)
    if answer is None:
        what = (
            "too large" if too_large else "not JSON" if parsed is None else "JSON without a Response object"
        )
        raise _invalid(f"answer is {what} ({len(response.body)} bytes)", status)
    if server_error is not None:
        code, message = server_error
        raise ProviderError(
            code,
            message,
            retry=retry_for_code(code),
            status=status,
            request_id=request_id,
            # Every AuthFailure but a stale timestamp is about the key or token itself.
            credentials_rejected=code.startswith("AuthFailure") and code != "AuthFailure.SignatureExpire",
        )
    if "Error" in answer:
        raise _invalid("Response.Error without a string Code", status, request_id)
    return answer


def error_from_response(response: HttpResponse) -> ProviderError | None:
    """The error an answer carries (HTTP status, Content-Type, malformed envelope, Response.Error).

    None for a sound success envelope; the action's own fields are checked by its parser.
    """
    try:
        _answer(response)
    except ProviderError as exc:
        return exc
    return None


def is_group_exists(error: ProviderError) -> bool:
    """CreateConsumerGroup's answer for a group that is already there (no dedicated code)."""
    return "consumer group already exists" in error.message.lower()


def _list(answer: Mapping[str, Any], name: str, response: HttpResponse) -> list[Any]:
    value = answer.get(name)
    if not isinstance(value, list):
        what = "missing" if value is None else f"a {type(value).__name__}, not a list"
        raise _invalid(f"Response.{name} is {what}", response.status, _request_id(answer.get("RequestId")))
    return value


def _is_id(value: object) -> bool:
    return server_values.is_whole(value) and 0 <= value <= MAX_PARTITION_ID  # type: ignore[operator]


# --- the provider ------------------------------------------------------------------------------

_REGION_RE = re.compile(r"[A-Za-z0-9_-]+")


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


class ClsProvider:
    """One consumer group of one CLS logset: request bytes for each action, answers parsed."""

    name = "cls"
    # <= CLS_RATE_LIMIT DescribeConsumerOffsets/s per group (the official consumer pauses too)
    position_spacing = 1 / CLS_RATE_LIMIT

    def __init__(
        self,
        endpoint: str | None,
        region: str,
        logset_id: str,
        topics: Sequence[str],
        consumer_group: str,
        consumer: str,
    ) -> None:
        if not _REGION_RE.fullmatch(region):
            raise ValueError(f"invalid CLS region {region!r}")
        if isinstance(topics, str) or not topics or not all(isinstance(t, str) and t for t in topics):
            raise ValueError("CLS topics must be a non-empty list of TopicIDs")
        if len(set(topics)) != len(topics):
            raise ValueError("CLS topics contain a duplicate TopicID")
        for label, value in (
            ("logset_id", logset_id),
            ("consumer_group", consumer_group),
            ("consumer", consumer),
        ):
            if not value:
                raise ValueError(f"CLS {label} is empty")
        self.endpoint: Endpoint = endpoints.resolve(endpoint or f"cls.{region}.tencentcloudapi.com")
        self.region = region
        self.logset_id = logset_id
        self.topics: tuple[str, ...] = tuple(topics)
        self.consumer_group = consumer_group
        self.consumer = consumer
        host = self.endpoint.host_header
        # Everything but the timestamp, token, body hash and signature is fixed per group.
        signed = {"content-type": CONTENT_TYPE, "host": host}
        self._canonical_head = canonical_request_tc3(
            "POST", "/", "", signed, SIGNED_HEADERS, b""
        ).removesuffix(sha256_hex(b""))
        self._header_heads = {
            action: (
                ("Host", host),
                ("Content-Type", CONTENT_TYPE),
                ("X-TC-Action", action),
                ("X-TC-Version", API_VERSION),
                ("X-TC-Region", region),
                ("X-TC-RequestClient", USER_AGENT),
                ("User-Agent", USER_AGENT),
            )
            for action in _ACTIONS
        }
        self._heartbeat_head = (
            f'{{"ConsumerGroup":{_dump(consumer_group)},"Consumer":{_dump(consumer)},'
            f'"LogsetId":{_dump(logset_id)},"TopicPartitionsInfo":['
        )
        self._topic_heads = {topic: f'{{"TopicID":{_dump(topic)},"Partitions":[' for topic in self.topics}
        self._key_cache: tuple[str, str, bytes] | None = None  # (secret, date, signing key)

    def __repr__(self) -> str:
        return (
            f"ClsProvider(host={self.endpoint.host_header!r}, logset_id={self.logset_id!r}, "
            f"consumer_group={self.consumer_group!r}, consumer={self.consumer!r})"
        )

    # requests

    def heartbeat_request(self, claim: ShardMap, now: float, credentials: Credentials) -> HttpRequest:
        """Lists every configured topic, `[]` where nothing is held (as the official consumer does)."""
        unknown = [topic for topic in claim if topic not in self._topic_heads]
        if unknown:
            raise ValueError(f"claim names TopicIDs that are not configured: {sorted(unknown)!r}")
        parts = [
            f"{head}{','.join(map(str, sorted(claim.get(topic, ()))))}]}}"
            for topic, head in self._topic_heads.items()
        ]
        body = f"{self._heartbeat_head}{','.join(parts)}]}}".encode()
        return self._signed(HEARTBEAT, body, now, credentials)

    def describe_groups_request(self, now: float, credentials: Credentials) -> HttpRequest:
        params = {"LogsetId": self.logset_id, "Topics": list(self.topics)}
        return self._signed(DESCRIBE_GROUPS, _dump(params).encode(), now, credentials)

    def setup_group_request(
        self, timeout: int, create: bool, now: float, credentials: Credentials
    ) -> HttpRequest:
        """CreateConsumerGroup (create=True) with this group's topics, or ModifyConsumerGroup of the
        timeout alone: Topics is optional there, and sending ours would drop the group's other topics
        for every consumer of the group."""
        action = CREATE_GROUP if create else MODIFY_GROUP
        return self._signed(action, self._group_body(timeout, with_topics=create), now, credentials)

    def _group_body(self, timeout: int, with_topics: bool) -> bytes:
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
            raise ValueError(f"consumer group timeout must be a positive number of seconds, not {timeout!r}")
        params: dict[str, object] = {"ConsumerGroup": self.consumer_group, "Timeout": timeout}
        if with_topics:
            params["Topics"] = list(self.topics)
        params["LogsetId"] = self.logset_id
        return _dump(params).encode()

    def _signed(self, action: str, body: bytes, now: float, credentials: Credentials) -> HttpRequest:
        """The one place every action is stamped and signed."""
        timestamp = int(now)
        date = utc_date(timestamp)
        cached = self._key_cache
        if cached is None or cached[0] != credentials.secret or cached[1] != date:
            cached = (credentials.secret, date, signing_key_tc3(credentials.secret, date, SERVICE))
            self._key_cache = cached
        to_sign = string_to_sign_tc3(timestamp, SERVICE, self._canonical_head + sha256_hex(body))
        authorization = format_authorization_tc3(
            credentials.key_id, date, SERVICE, signature_from_key_tc3(cached[2], to_sign)
        )
        headers = [
            *self._header_heads[action],
            ("Content-Length", str(len(body))),
            ("X-TC-Timestamp", str(timestamp)),
        ]
        if credentials.token:
            headers.append(("X-TC-Token", credentials.token))
        headers.append(("Authorization", authorization))
        return HttpRequest("POST", "/", tuple(headers), body)

    # answers

    def parse_heartbeat(self, response: HttpResponse) -> ShardMap:
        """Response.TopicPartitionsInfo -> {TopicID: partitions}.

        A TopicID we were not configured with is an error (UnknownTopic, SLOW), not something to
        drop: the server would keep those partitions with us and nobody would read them.
        """
        answer = _answer(response)
        request_id = _request_id(answer.get("RequestId"))
        assignment: dict[str, frozenset[int]] = {}
        for item in _list(answer, "TopicPartitionsInfo", response):
            topic = item.get("TopicID") if isinstance(item, dict) else None
            partitions = item.get("Partitions") if isinstance(item, dict) else None
            if not isinstance(topic, str) or not isinstance(partitions, list):
                raise _invalid(
                    "TopicPartitionsInfo entry without TopicID and Partitions list", 200, request_id
                )
            if not all(_is_id(p) for p in partitions):
                raise _invalid(
                    f"Partitions of {_clip(topic)!r} are not all integers in 0..2^63-1", 200, request_id
                )
            if topic not in self._topic_heads:
                raise ProviderError(
                    UNKNOWN_TOPIC,
                    f"server assigned partitions of TopicID {_clip(topic)!r}, which is not configured "
                    "(the consumer group's topics differ from ours)",
                    retry=Retry.SLOW, status=200, request_id=request_id,
                )  # fmt: skip
            # A topic listed twice is merged rather than refused: either way we hold the union.
            assignment[topic] = assignment.get(topic, frozenset()) | frozenset(partitions)
        return shard_map(assignment)

    def parse_describe_groups(self, response: HttpResponse) -> list[ServerGroup]:
        """Response.ConsumerGroupsInfo; null means none (Tencent marks "no value" so), absent is an error."""
        answer = _answer(response)
        request_id = _request_id(answer.get("RequestId"))
        if "ConsumerGroupsInfo" in answer and answer["ConsumerGroupsInfo"] is None:
            return []
        groups: list[ServerGroup] = []
        for item in _list(answer, "ConsumerGroupsInfo", response):
            name = item.get("ConsumerGroup") if isinstance(item, dict) else None
            timeout = item.get("Timeout") if isinstance(item, dict) else None
            topics = item.get("Topics") if isinstance(item, dict) else None
            if topics is None:
                topics = []
            valid_topics = isinstance(topics, list) and all(isinstance(t, str) for t in topics)
            timeouts = server_values.group_timeout(timeout)
            if not isinstance(name, str) or timeouts is None or not valid_topics:
                raise _invalid(
                    "ConsumerGroupsInfo entry without ConsumerGroup, a positive integer Timeout and Topics",
                    200,
                    request_id,
                )
            lease_by, reported = timeouts
            clamped = reported if reported != lease_by else None
            groups.append(ServerGroup(name, lease_by, topics=tuple(topics), reported_timeout=clamped))
        return groups

    # -- the Provider protocol's bootstrap view of the calls above

    describe_group_request = describe_groups_request

    def parse_describe_group(self, response: HttpResponse) -> ServerGroup | None:
        return find_group(self.parse_describe_groups(response), self.consumer_group)

    def parse_setup_group(self, response: HttpResponse) -> None:
        error = error_from_response(response)
        if error is not None:
            raise error

    # -- checkpoints (cls_offsets.py has the parameter and answer shapes)

    def checkpoint_problem(self, value: object) -> str | None:
        return offsets.offset_problem(value)

    def committed_lookups(self, held: ShardMap) -> list[tuple[str, tuple[int, ...]]]:
        """One DescribeConsumerOffsets per partition, as the official consumer asks."""
        return [(topic, (p,)) for topic in self.topics for p in sorted(held.get(topic, ()))]

    def committed_request(
        self, topic: str, ids: tuple[int, ...], start: Start, now: float, credentials: Credentials
    ) -> HttpRequest:
        return self._describe_offsets(topic, ids, start, offsets.FETCH_OFFSET, now, credentials)

    def parse_committed(
        self, topic: str, ids: tuple[int, ...], response: HttpResponse
    ) -> dict[int, Checkpoint | None]:
        answer = _answer(response)
        found: dict[int, Checkpoint | None] = {}
        for partition in ids:
            offset = self._offset(answer, topic, partition, response)
            found[partition] = offset if offset is not None and offset > 0 else None
        return found

    def position_request(
        self, topic: str, shard: int, start: Start, now: float, credentials: Credentials
    ) -> HttpRequest:
        return self._describe_offsets(topic, (shard,), start, offsets.LIST_OFFSET, now, credentials)

    def parse_position(self, topic: str, shard: int, response: HttpResponse) -> Checkpoint:
        answer = _answer(response)
        offset = self._offset(answer, topic, shard, response)
        if offset is None or offset < 0:
            shown = "missing" if offset is None else str(offset)
            raise _invalid(
                f"no offset for partition {shard} of {_clip(topic)!r} ({shown})",
                response.status,
                _text(answer.get("RequestId")),
            )
        return offset

    def commit_batches(self, values: Mapping[ShardKey, Checkpoint]) -> list[dict[ShardKey, Checkpoint]]:
        """CommitConsumerOffsets takes every topic and partition in one request."""
        return [dict(values)] if values else []

    def commit_request(
        self, values: Mapping[ShardKey, Checkpoint], now: float, credentials: Credentials
    ) -> HttpRequest:
        numbers: dict[ShardKey, int] = {}
        for (topic, partition), value in values.items():
            problem = offsets.offset_problem(value)
            if topic not in self._topic_heads or problem is not None:
                raise ValueError(problem or f"TopicID {topic!r} is not configured")
            assert isinstance(value, int)
            numbers[(topic, partition)] = value
        params = offsets.commit_params(self.consumer_group, self.consumer, self.logset_id, numbers)
        return self._signed(offsets.COMMIT_OFFSETS, _dump(params).encode(), now, credentials)

    def parse_commit(self, response: HttpResponse) -> None:
        error = error_from_response(response)
        if error is not None:
            raise error

    def _describe_offsets(
        self, topic: str, ids: tuple[int, ...], start: Start, offset_type: int, now: float,
        credentials: Credentials,
    ) -> HttpRequest:  # fmt: skip
        if len(ids) != 1 or topic not in self._topic_heads:
            raise ValueError("DescribeConsumerOffsets asks for one partition of a configured topic")
        params = offsets.describe_params(
            self.consumer_group, self.logset_id, topic, ids[0], start, offset_type
        )
        return self._signed(offsets.DESCRIBE_OFFSETS, _dump(params).encode(), now, credentials)

    def _offset(
        self, answer: Mapping[str, Any], topic: str, partition: int, response: HttpResponse
    ) -> int | None:
        try:
            return offsets.offset_in(answer, topic, partition)
        except offsets.AnswerShape as exc:
            raise _invalid(str(exc), response.status, _text(answer.get("RequestId"))) from None
