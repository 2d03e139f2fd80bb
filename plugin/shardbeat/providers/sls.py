"""Alibaba Cloud SLS on the wire: consumer-group requests, v1 or v4 signing, answers and errors.

Pure: builds HttpRequest values and reads HttpResponse values. The signing functions take headers
as (name, value) pairs in any case, so the emulator verifies a request from the headers it received
with the very code that signed it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shardbeat import __version__
from shardbeat.core.checkpoints import Checkpoint, ShardKey, Start
from shardbeat.core.json_kind import json_kind
from shardbeat.core.redaction import redact
from shardbeat.core.shards import ShardMap, shard_map
from shardbeat.providers import server_values
from shardbeat.providers import sls_checkpoints as checkpoints
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
from shardbeat.providers.endpoint import resolve
from shardbeat.providers.sls_signing import (
    V4_ALGORITHM as V4_ALGORITHM,
)
from shardbeat.providers.sls_signing import (
    authorization_v4 as authorization_v4,
)
from shardbeat.providers.sls_signing import (
    canonical_headers_v1 as canonical_headers_v1,
)
from shardbeat.providers.sls_signing import (
    canonical_request_v4 as canonical_request_v4,
)
from shardbeat.providers.sls_signing import (
    canonical_resource as canonical_resource,
)
from shardbeat.providers.sls_signing import (
    content_md5 as content_md5,
)
from shardbeat.providers.sls_signing import (
    content_sha256 as content_sha256,
)
from shardbeat.providers.sls_signing import (
    rfc1123 as rfc1123,
)
from shardbeat.providers.sls_signing import (
    scope_v4 as scope_v4,
)
from shardbeat.providers.sls_signing import (
    sign_v1 as sign_v1,
)
from shardbeat.providers.sls_signing import (
    sign_v4 as sign_v4,
)
from shardbeat.providers.sls_signing import (
    signing_key_v4 as signing_key_v4,
)
from shardbeat.providers.sls_signing import (
    string_to_sign_v1 as string_to_sign_v1,
)
from shardbeat.providers.sls_signing import (
    string_to_sign_v1_from_canonical as _string_to_sign_v1,
)
from shardbeat.providers.sls_signing import (
    string_to_sign_v4 as string_to_sign_v4,
)
from shardbeat.providers.sls_signing import (
    v4_date as v4_date,
)

API_VERSION = "0.6.0"
USER_AGENT = f"shardbeat/{__version__}"
JSON_TYPE = "application/json"
MAX_SHARD_ID = 2**31 - 1  # shard ids are int32 on the server
MAX_ANSWER_BYTES = 1 << 20  # a real answer is a few KiB; never parse (or echo) more than this
INVALID_RESPONSE = "InvalidResponse"

# Go/Java SDKs and the API doc's own sample send x-log-bodyrawsize: 0 (it is the uncompressed size of a
# compressed body; ours are never compressed). Sending it keeps us byte-for-byte on the vectors' header set.
_CONSTANT_SIGNED = (
    ("x-log-apiversion", API_VERSION),
    ("x-log-bodyrawsize", "0"),
    ("x-log-signaturemethod", "hmac-sha1"),
)

# ---------------------------------------------------------------------------------------------------
# Answers and errors

# Throttling and quota codes are transient whatever the status (the SDKs' own lists name the
# shard-level quota codes next to WriteQuotaExceed).
_FAST_CODES = """InternalServerError ServerBusy RequestTimeout ExceedQuota QuotaExceed WriteQuotaExceed
    ShardWriteQuotaExceed ReadQuotaExceed ShardReadQuotaExceed Throttling"""
# The key or token itself was refused, whatever the HTTP status: worth re-reading rotated credentials.
# The dotted spellings are what STS-backed keys get (SecurityToken.Expired after the token's expiry).
_CREDENTIAL_CODES = frozenset(
    [
        "Unauthorized",
        "SignatureNotMatch",
        "InvalidAccessKeyId",
        "InvalidAccessKeyId.NotFound",
        "SecurityTokenExpired",
        "SecurityToken.Expired",
        "InvalidSecurityToken",
    ]
)
# Named so that they stay SLOW whatever status a proxy puts in front of them.
_SLOW_CODES = " ".join(
    [*_CREDENTIAL_CODES, "Forbidden ProjectForbidden ProjectNotExist LogStoreNotExist ConsumerGroupNotExist"]
)
# The SDK (logclient._is_auth_err) also takes any code naming the key or the token as one of these.
_CREDENTIAL_PREFIXES = ("InvalidAccessKeyId", "SecurityToken")


def _is_credential_code(code: str) -> bool:
    return code in _CREDENTIAL_CODES or code.startswith(_CREDENTIAL_PREFIXES)


_RETRY_BY_CODE: dict[str, Retry] = {
    "NotExistConsumerWithBody": Retry.REJOIN,
    "RequestTimeExpired": Retry.RESIGN,
    **dict.fromkeys(_FAST_CODES.split(), Retry.FAST),
    **dict.fromkeys(_SLOW_CODES.split(), Retry.SLOW),
}


def _retry_for_status(status: int) -> Retry:
    # A garbled 2xx is most likely a passing fault, and the lease is at stake: retry soon.
    if status >= 500 or status in (408, 429) or 200 <= status < 300:
        return Retry.FAST
    return Retry.SLOW


_clip = server_values.text


def _excerpt(body: bytes | str, limit: int = 120) -> str:
    """The start of a body, quoted, with its full size when cut: never echo a huge body. Masked
    before the cut and the quoting: either would hide an echoed token (or a part of it) from the mask."""
    text = redact(body.decode("utf-8", "replace") if isinstance(body, bytes) else body)
    return repr(_clip(text[:limit], limit)) + (f" ... ({len(body)} in all)" if len(text) > limit else "")


def _request_id(response: HttpResponse) -> str | None:
    return server_values.request_id(response.headers.get("x-log-requestid"))


def _invalid(response: HttpResponse, problem: str) -> ProviderError:
    return ProviderError(
        INVALID_RESPONSE,
        f"HTTP {response.status}{server_values.redirect_note(response.status, response.headers)}: {problem}",
        retry=_retry_for_status(response.status),
        status=response.status,
        request_id=_request_id(response),
    )


def _load_json(response: HttpResponse) -> Any:
    body = response.body
    if not body:
        raise _invalid(response, "empty body")
    if len(body) > MAX_ANSWER_BYTES:
        raise _invalid(response, f"body of {len(body)} bytes is larger than any valid answer")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        reason = _clip(str(exc), 80)
        raise _invalid(response, f"body is not JSON ({reason}): {_excerpt(body)}") from None


def error_from_response(response: HttpResponse) -> ProviderError:
    """The ProviderError for a failed answer: SLS code and message, status, request id, retry policy."""
    try:
        doc = _load_json(response)
    except ProviderError as exc:
        return exc
    code = doc.get("errorCode") if isinstance(doc, dict) else None
    if not isinstance(code, str) or not code.strip():
        return _invalid(response, f"not an SLS error body ({json_kind(doc)}): {_excerpt(response.body)}")
    message = doc.get("errorMessage")
    return ProviderError(
        _clip(code, 64),
        _clip(message, 512) if isinstance(message, str) else "(no errorMessage in the answer)",
        retry=Retry.SLOW
        if _is_credential_code(code)
        else _RETRY_BY_CODE.get(code, _retry_for_status(response.status)),
        status=response.status,
        request_id=_request_id(response),
        credentials_rejected=_is_credential_code(code) or response.status == 401,
    )


def _success_json(response: HttpResponse) -> Any:
    if response.status != 200:
        raise error_from_response(response)
    return _load_json(response)


def server_time(response: HttpResponse) -> float | None:
    """The answer's Date header in epoch seconds (to correct our clock after RequestTimeExpired)."""
    return server_values.http_date(response.headers.get("date"))


# ---------------------------------------------------------------------------------------------------
# The consumer group


@dataclass(frozen=True, slots=True)
class _Route:
    target: str  # path and percent-encoded query, as on the request line
    resource: str  # what v1 signs: raw values, sorted keys
    path: str  # what v4 signs, with the query apart
    query: Mapping[str, str]


def _route(segments: tuple[str, ...], query: Mapping[str, str]) -> _Route:
    wire = "/" + "/".join(quote(s, safe="") for s in segments)
    if query:
        wire += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
    path = "/" + "/".join(segments)
    return _Route(wire, canonical_resource(path, query), path, dict(query))


def _json_body(fields: Mapping[str, object]) -> bytes:
    # The SDK's json.dumps spacing, so a request matches the official vectors byte for byte.
    return json.dumps(fields).encode()


class SlsProvider:
    """One consumer of one consumer group on one logstore."""

    name: str = "sls"
    position_spacing: float = 0.0

    def __init__(
        self,
        endpoint: str,
        project: str,
        logstore: str,
        consumer_group: str,
        consumer: str,
        signature_version: str = "v1",
        region: str | None = None,
    ) -> None:
        if not all((project, logstore, consumer_group, consumer)):
            raise ValueError("SLS project, logstore, consumer_group and consumer must all be non-empty")
        if signature_version not in ("v1", "v4"):
            raise ValueError(f"SLS signature_version must be v1 or v4, not {signature_version!r}")
        if signature_version == "v4" and not region:
            raise ValueError("SLS signature v4 needs the region")
        self.signature_version = signature_version
        self.region = region or ""
        self._v4_key: tuple[str, str, bytes] | None = None  # (secret, yyyymmdd, signing key)
        self.endpoint: Endpoint = resolve(endpoint, vhost_prefix=project)
        self.project = project
        self.logstore = logstore
        self.consumer_group = consumer_group
        self.consumer = consumer
        self.topics: tuple[str, ...] = (logstore,)
        groups = ("logstores", logstore, "consumergroups")
        self._groups = _route(groups, {})
        self._group = _route((*groups, consumer_group), {})
        self._heartbeat = _route((*groups, consumer_group), {"type": "heartbeat", "consumer": consumer})
        self._commit = _route(
            (*groups, consumer_group), {"type": "checkpoint", "consumer": consumer, "forceSuccess": "false"}
        )
        self._host = ("Host", self.endpoint.host_header)
        self._canonical: tuple[str | None, str] | None = None  # (token, signed x-log-*/x-acs-* block)

    def __repr__(self) -> str:
        return (
            f"SlsProvider(host={self.endpoint.host_header!r}, logstore={self.logstore!r}, "
            f"consumer_group={self.consumer_group!r}, consumer={self.consumer!r})"
        )

    def _signed(
        self, method: str, route: _Route, body: bytes, now: float, credentials: Credentials
    ) -> HttpRequest:
        """The one request builder: headers as the SDKs send them, signed over exactly those."""
        if self.signature_version == "v4":
            return self._signed_v4(method, route, body, now, credentials)
        md5 = content_md5(body)
        content_type = JSON_TYPE if body else ""
        date = rfc1123(now)
        headers = [self._host]
        if body:
            headers += (("Content-Type", content_type), ("Content-MD5", md5))
        headers += (("Content-Length", str(len(body))), ("Date", date), *_CONSTANT_SIGNED)
        if credentials.token:
            headers.append(("x-acs-security-token", credentials.token))
        canonical = self._canonical_headers(credentials.token)
        to_sign = _string_to_sign_v1(method, md5, content_type, date, canonical, route.resource)
        signature = sign_v1(credentials.secret, to_sign)
        headers += (("Authorization", f"LOG {credentials.key_id}:{signature}"), ("User-Agent", USER_AGENT))
        return HttpRequest(method, route.target, tuple(headers), body)

    def _signed_v4(
        self, method: str, route: _Route, body: bytes, now: float, credentials: Credentials
    ) -> HttpRequest:
        """SLS4-HMAC-SHA256 with the official SDK's header set: content-type, host, x-log-apiversion,
        x-log-content-sha256, x-log-date (and the STS token) are signed; no Date, no Content-MD5."""
        x_log_date = v4_date(now)
        payload = content_sha256(body)
        headers = [self._host]
        if body:
            headers.append(("Content-Type", JSON_TYPE))
        headers += (
            ("Content-Length", str(len(body))),
            ("x-log-apiversion", API_VERSION),
            ("x-log-content-sha256", payload),
            ("x-log-date", x_log_date),
        )
        if credentials.token:
            headers.append(("x-acs-security-token", credentials.token))
        canonical = canonical_request_v4(method, route.path, route.query, headers, payload)
        to_sign = string_to_sign_v4(x_log_date, self.region, canonical)
        signature = self._sign_v4(credentials.secret, x_log_date[:8], to_sign)
        authorization = authorization_v4(credentials.key_id, x_log_date, self.region, signature)
        headers += (("Authorization", authorization), ("User-Agent", USER_AGENT))
        return HttpRequest(method, route.target, tuple(headers), body)

    def _sign_v4(self, secret: str, day: str, to_sign: str) -> str:
        # The key chain depends on the secret and the UTC day only: derive it once a day, not per beat.
        cached = self._v4_key
        if cached is None or cached[0] != secret or cached[1] != day:
            cached = self._v4_key = (secret, day, signing_key_v4(secret, day, self.region))
        return hmac.new(cached[2], to_sign.encode(), hashlib.sha256).hexdigest()

    def _canonical_headers(self, token: str | None) -> str:
        """The signed header block: only the constant x-log-* headers and the token are signed, so it
        is built once per token instead of sorted and lower-cased on every beat."""
        cached = self._canonical
        if cached is None or cached[0] != token:
            signed = [*_CONSTANT_SIGNED, *((("x-acs-security-token", token),) if token else ())]
            cached = self._canonical = (token, canonical_headers_v1(signed))
        return cached[1]

    # -- heartbeat (the hot path)

    def heartbeat_request(self, claim: ShardMap, now: float, credentials: Credentials) -> HttpRequest:
        """POST the held shards of our logstore as a bare, sorted, compact JSON array ("[]" if none)."""
        body = f"[{','.join(map(str, sorted(claim.get(self.logstore, ()))))}]".encode()
        return self._signed("POST", self._heartbeat, body, now, credentials)

    def parse_heartbeat(self, response: HttpResponse) -> ShardMap:
        """{logstore: ids} from a 200 JSON array of shard ids; "[]" gives the empty map."""
        doc = _success_json(response)
        if not isinstance(doc, list):
            raise _invalid(response, f"expected a JSON array of shard ids, got {json_kind(doc)}")
        for item in doc:
            if type(item) is not int or not 0 <= item <= MAX_SHARD_ID:
                raise _invalid(response, f"not a shard id: {json_kind(item)} {_clip(json.dumps(item), 40)}")
        return shard_map({self.logstore: doc})

    # -- group bootstrap

    def list_groups_request(self, now: float, credentials: Credentials) -> HttpRequest:
        return self._signed("GET", self._groups, b"", now, credentials)

    def parse_list_groups(self, response: HttpResponse) -> list[ServerGroup]:
        doc = _success_json(response)
        if not isinstance(doc, list):
            raise _invalid(response, f"expected a JSON array of consumer groups, got {json_kind(doc)}")
        groups = []
        for item in doc:
            match item:
                case {"name": str(name), "timeout": timeout, "order": bool(order)} if (
                    name and (timeouts := server_values.group_timeout(timeout)) is not None
                ):
                    lease_by, reported = timeouts
                    clamped = reported if reported != lease_by else None
                    groups.append(ServerGroup(name, lease_by, order=order, reported_timeout=clamped))
                case _:
                    shown = _excerpt(json.dumps(item))
                    raise _invalid(response, f"not a consumer group {{name, timeout, order}}: {shown}")
        return groups

    def create_group_request(
        self, timeout: int, order: bool, now: float, credentials: Credentials
    ) -> HttpRequest:
        fields = {"consumerGroup": self.consumer_group, "timeout": _timeout(timeout), "order": _order(order)}
        return self._signed("POST", self._groups, _json_body(fields), now, credentials)

    def update_group_request(
        self, timeout: int | None, order: bool | None, now: float, credentials: Credentials
    ) -> HttpRequest:
        fields: dict[str, object] = {}
        if order is not None:
            fields["order"] = _order(order)
        if timeout is not None:
            fields["timeout"] = _timeout(timeout)
        if not fields:
            raise ValueError("update_group_request needs a timeout, an order, or both")
        return self._signed("PUT", self._group, _json_body(fields), now, credentials)

    def parse_group_change(self, response: HttpResponse) -> None:
        """Create/update answers: 200 (body ignored) or a ProviderError."""
        if response.status != 200:
            raise error_from_response(response)

    # -- the Provider protocol's bootstrap view of the calls above

    describe_group_request = list_groups_request
    parse_setup_group = parse_group_change

    def parse_describe_group(self, response: HttpResponse) -> ServerGroup | None:
        return find_group(self.parse_list_groups(response), self.consumer_group)

    def setup_group_request(
        self, timeout: int, create: bool, now: float, credentials: Credentials
    ) -> HttpRequest:
        if create:
            return self.create_group_request(timeout, False, now, credentials)
        return self.update_group_request(timeout, None, now, credentials)

    # -- checkpoints (sls_checkpoints.py has the wire shapes)

    def checkpoint_problem(self, value: object) -> str | None:
        return checkpoints.cursor_problem(value)

    def committed_lookups(self, held: ShardMap) -> list[tuple[str, tuple[int, ...]]]:
        """One GetCheckPoint for the logstore: it lists every shard (one shard asks for just that one)."""
        ids = tuple(sorted(held.get(self.logstore, ())))
        return [(self.logstore, ids)] if ids else []

    def committed_request(
        self, topic: str, ids: tuple[int, ...], start: Start, now: float, credentials: Credentials
    ) -> HttpRequest:
        query = {"shard": str(ids[0])} if len(ids) == 1 else {}
        route = _route(("logstores", self.logstore, "consumergroups", self.consumer_group), query)
        return self._signed("GET", route, b"", now, credentials)

    def parse_committed(
        self, topic: str, ids: tuple[int, ...], response: HttpResponse
    ) -> dict[int, Checkpoint | None]:
        try:
            return dict(checkpoints.committed_from(_success_json(response), ids))
        except checkpoints.AnswerShape as exc:
            raise _invalid(response, str(exc)) from None

    def position_request(
        self, topic: str, shard: int, start: Start, now: float, credentials: Credentials
    ) -> HttpRequest:
        query = {"type": "cursor", "from": checkpoints.cursor_from(start)}
        route = _route(("logstores", self.logstore, "shards", str(shard)), query)
        return self._signed("GET", route, b"", now, credentials)

    def parse_position(self, topic: str, shard: int, response: HttpResponse) -> Checkpoint:
        try:
            return checkpoints.cursor_of(_success_json(response))
        except checkpoints.AnswerShape as exc:
            raise _invalid(response, str(exc)) from None

    def commit_batches(self, values: Mapping[ShardKey, Checkpoint]) -> list[dict[ShardKey, Checkpoint]]:
        """UpdateCheckPoint takes one shard per request."""
        return [{key: values[key]} for key in sorted(values)]

    def commit_request(
        self, values: Mapping[ShardKey, Checkpoint], now: float, credentials: Credentials
    ) -> HttpRequest:
        if len(values) != 1:
            raise ValueError("an SLS commit carries exactly one shard")
        (((topic, shard), cursor),) = values.items()
        problem = checkpoints.cursor_problem(cursor)
        if topic != self.logstore or problem is not None:
            raise ValueError(problem or f"not a shard of logstore {self.logstore!r}: {topic!r}")
        assert isinstance(cursor, str)
        return self._signed("POST", self._commit, checkpoints.commit_body(shard, cursor), now, credentials)

    def parse_commit(self, response: HttpResponse) -> None:
        if response.status != 200:
            raise error_from_response(response)


def _timeout(timeout: int) -> int:
    if type(timeout) is not int or timeout <= 0:
        raise ValueError(f"consumer group timeout must be a positive number of seconds, not {timeout!r}")
    return timeout


def _order(order: bool) -> bool:
    if not isinstance(order, bool):
        raise ValueError(f"consumer group order must be true or false, not {order!r}")
    return order
