"""SlsProvider: requests as the vectors describe them, answer parsing, error mapping, endpoints."""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardbeat.core.shards import ShardMap
from shardbeat.providers import sls
from shardbeat.providers.base import (
    Credentials,
    HttpRequest,
    HttpResponse,
    Provider,
    ProviderError,
    Retry,
    ServerGroup,
)
from shardbeat.providers.endpoint import EndpointError

VECTORS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "vectors.json").read_text())["sls_v1"]
# Our header set is the Go/Java one (x-log-bodyrawsize: 0), so those vectors must match us byte for byte.
OURS = [v for v in VECTORS if "x-log-bodyrawsize" in v["signed_headers"]]
HEARTBEATS = [v for v in OURS if v["query"].get("type") == "heartbeat"]
CREATE = next(v for v in OURS if v["name"].startswith("CreateConsumerGroup"))
LIST = next(v for v in OURS if v["name"] == "ListConsumerGroup")
NOW = parsedate_to_datetime(VECTORS[0]["date"]).timestamp()
TOKEN = "testSecurityToken"


def provider_for(vector: dict[str, Any], consumer: str = "consumer_1") -> sls.SlsProvider:
    """The provider the vectors describe: Host my-project.cn-shanghai..., logstore, group from the path."""
    project, endpoint = vector["host"].split(".", 1)
    _, logstore, _, *group = vector["path"].strip("/").split("/")
    return sls.SlsProvider(
        endpoint, project, logstore, group[0] if group else "consumer_group_test", consumer
    )


def credentials_for(vector: dict[str, Any]) -> Credentials:
    token = vector["signed_headers"].get("x-acs-security-token")
    return Credentials(vector["access_key_id"], vector["access_key_secret"], token)


def headers_of(request: HttpRequest) -> dict[str, str]:
    names = [name.lower() for name, _ in request.headers]
    assert len(names) == len(set(names)), f"duplicate headers in {names}"
    return {name.lower(): value for name, value in request.headers}


def assert_matches_vector(request: HttpRequest, vector: dict[str, Any]) -> None:
    headers = headers_of(request)
    assert request.method == vector["method"]
    assert urlsplit(request.target).path == vector["path"]
    assert dict(parse_qsl(urlsplit(request.target).query)) == vector["query"]
    assert request.body == vector["body"].encode()
    assert headers["host"] == vector["host"]
    assert headers["date"] == vector["date"]
    assert headers.get("content-md5", "") == vector["content_md5"]
    assert headers.get("content-type", "") == vector["content_type"]
    assert headers["content-length"] == str(len(vector["body"]))
    signed = {n: v for n, v in headers.items() if n.startswith(("x-log-", "x-acs-"))}
    assert signed == vector["signed_headers"]
    assert headers["authorization"] == vector["authorization"]
    assert headers["user-agent"].startswith("shardbeat/")


def verify_like_a_server(request: HttpRequest, secret: str) -> dict[str, str]:
    """What the emulator does: rebuild the string to sign from what arrived, return the decoded query."""
    headers = headers_of(request)
    parts = urlsplit(request.target)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    to_sign = sls.string_to_sign_v1(
        request.method,
        headers.get("content-md5", ""),
        headers.get("content-type", ""),
        headers["date"],
        headers.items(),
        sls.canonical_resource(unquote(parts.path), query),
    )
    assert headers["authorization"].startswith("LOG ")
    _, _, signature = headers["authorization"].partition(":")
    assert signature == sls.sign_v1(secret, to_sign)
    assert headers.get("content-md5", "") == sls.content_md5(request.body)
    return query


def answer(status: int, body: bytes | str, request_id: str | None = "REQ-1") -> HttpResponse:
    headers = {"x-log-requestid": request_id} if request_id else {}
    return HttpResponse(status, headers, body.encode() if isinstance(body, str) else body)


@pytest.fixture
def provider() -> sls.SlsProvider:
    return provider_for(VECTORS[0])


# -- requests


@pytest.mark.parametrize("vector", HEARTBEATS, ids=[v["name"] for v in HEARTBEATS])
def test_heartbeat_request_reproduces_vector(vector: dict[str, Any]) -> None:
    provider = provider_for(vector)
    claim = {provider.logstore: frozenset(json.loads(vector["body"]))}
    request = provider.heartbeat_request(claim, NOW, credentials_for(vector))
    assert_matches_vector(request, vector)


def test_heartbeat_vectors_cover_token_and_no_token() -> None:
    tokens = {"x-acs-security-token" in v["signed_headers"] for v in HEARTBEATS}
    assert tokens == {True, False}


def test_create_group_request_reproduces_vector() -> None:
    body = json.loads(CREATE["body"])
    provider = provider_for(CREATE)
    assert provider.consumer_group == body["consumerGroup"]
    request = provider.create_group_request(body["timeout"], body["order"], NOW, credentials_for(CREATE))
    assert_matches_vector(request, CREATE)


def test_list_groups_request_reproduces_vector() -> None:
    request = provider_for(LIST).list_groups_request(NOW, credentials_for(LIST))
    assert_matches_vector(request, LIST)
    assert "content-type" not in headers_of(request) and "content-md5" not in headers_of(request)


def test_heartbeat_body_is_sorted_compact_array_of_our_logstore(provider: sls.SlsProvider) -> None:
    claim = {provider.logstore: frozenset({7, 0, 3}), "other-logstore": frozenset({9})}
    request = provider.heartbeat_request(claim, NOW, Credentials("id", "secret"))
    assert request.body == b"[0,3,7]"
    verify_like_a_server(request, "secret")


def test_empty_claim_sends_empty_array_with_md5(provider: sls.SlsProvider) -> None:
    empty_md5 = next(v["content_md5"] for v in VECTORS if v["body"] == "[]")
    claims: list[ShardMap] = [{}, {provider.logstore: frozenset()}]
    for claim in claims:
        request = provider.heartbeat_request(claim, NOW, Credentials("id", "secret"))
        assert request.body == b"[]"
        assert headers_of(request)["content-md5"] == empty_md5
        assert headers_of(request)["content-length"] == "2"


def test_token_header_only_with_a_token(provider: sls.SlsProvider) -> None:
    for token, present in ((None, False), ("", False), ("tok", True)):
        request = provider.heartbeat_request({}, NOW, Credentials("id", "secret", token))
        assert ("x-acs-security-token" in headers_of(request)) is present
        verify_like_a_server(request, "secret")


def test_date_follows_the_clock(provider: sls.SlsProvider) -> None:
    request = provider.heartbeat_request({}, NOW + 3600, Credentials("id", "secret"))
    assert headers_of(request)["date"] == "Sun, 06 May 2018 10:44:10 GMT"


def test_consumer_name_is_percent_encoded_on_the_wire_and_raw_in_the_signature() -> None:
    consumer = "host 1/a&b=c+d~é"
    provider = provider_for(VECTORS[0], consumer=consumer)
    request = provider.heartbeat_request({}, NOW, Credentials("id", "secret"))
    assert request.target == (
        "/logstores/my-logstore/consumergroups/consumer_group_test"
        "?type=heartbeat&consumer=host%201%2Fa%26b%3Dc%2Bd~%C3%A9"
    )
    resource = (
        "/logstores/my-logstore/consumergroups/consumer_group_test?consumer=host 1/a&b=c+d~é&type=heartbeat"
    )
    headers = headers_of(request)
    to_sign = sls.string_to_sign_v1(
        "POST", headers["content-md5"], "application/json", headers["date"], request.headers, resource
    )
    assert headers["authorization"] == "LOG id:" + sls.sign_v1("secret", to_sign)


@settings(max_examples=60, deadline=None)
@given(consumer=st.text(min_size=1, max_size=40), ids=st.frozensets(st.integers(0, 512), max_size=20))
def test_any_consumer_and_claim_round_trip_through_a_server_check(consumer: str, ids: frozenset[int]) -> None:
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in consumer):
        return  # lone surrogates cannot be sent as UTF-8 at all
    provider = provider_for(VECTORS[0], consumer=consumer)
    request = provider.heartbeat_request({provider.logstore: ids}, NOW, Credentials("id", "s3", "t"))
    query = verify_like_a_server(request, "s3")
    assert query == {"type": "heartbeat", "consumer": consumer}
    assert json.loads(request.body) == sorted(ids)


def test_update_group_request(provider: sls.SlsProvider) -> None:
    cases = [
        (60, None, {"timeout": 60}),
        (None, True, {"order": True}),
        (30, False, {"order": False, "timeout": 30}),
    ]
    for timeout, order, fields in cases:
        request = provider.update_group_request(timeout, order, NOW, Credentials("id", "secret"))
        assert request.method == "PUT"
        assert request.target == "/logstores/my-logstore/consumergroups/consumer_group_test"
        assert json.loads(request.body) == fields
        verify_like_a_server(request, "secret")


def test_group_request_arguments_are_checked(provider: sls.SlsProvider) -> None:
    creds = Credentials("id", "secret")
    with pytest.raises(ValueError, match="timeout, an order"):
        provider.update_group_request(None, None, NOW, creds)
    for bad in (0, -5, True, 1.5, "40"):
        with pytest.raises(ValueError, match="timeout"):
            provider.create_group_request(bad, False, NOW, creds)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order"):
        provider.create_group_request(40, "false", NOW, creds)  # type: ignore[arg-type]


# -- endpoints


@pytest.mark.parametrize(
    ("endpoint", "scheme", "host", "port", "host_header"),
    [
        ("cn-hangzhou.log.aliyuncs.com", "https", "my-project.cn-hangzhou.log.aliyuncs.com", 443, None),
        (
            "http://cn-hangzhou.log.aliyuncs.com:8080",
            "http",
            "my-project.cn-hangzhou.log.aliyuncs.com",
            8080,
            None,
        ),
        ("127.0.0.1", "https", "127.0.0.1", 443, "my-project.127.0.0.1"),
        ("http://127.0.0.1:8099", "http", "127.0.0.1", 8099, "my-project.127.0.0.1:8099"),
        ("localhost", "https", "localhost", 443, "my-project.localhost"),
        ("http://localhost:8099", "http", "localhost", 8099, "my-project.localhost:8099"),
        ("http://[::1]:8099", "http", "::1", 8099, "my-project.[::1]:8099"),
    ],
)
def test_endpoint_connect_host_and_host_header(
    endpoint: str, scheme: str, host: str, port: int, host_header: str | None
) -> None:
    expected_header = host_header or (host if port in (80, 443) else f"{host}:{port}")
    provider = sls.SlsProvider(endpoint, "my-project", "ls", "g", "c")
    assert (provider.endpoint.scheme, provider.endpoint.host, provider.endpoint.port) == (scheme, host, port)
    assert provider.endpoint.host_header == expected_header
    request = provider.heartbeat_request({}, NOW, Credentials("id", "secret"))
    assert headers_of(request)["host"] == expected_header


def test_provider_shape(provider: sls.SlsProvider) -> None:
    as_protocol: Provider = provider
    assert as_protocol.name == "sls"
    assert as_protocol.topics == ("my-logstore",)


def test_bad_construction_is_a_clear_error() -> None:
    with pytest.raises(EndpointError):
        sls.SlsProvider("", "p", "ls", "g", "c")
    with pytest.raises(ValueError, match="non-empty"):
        sls.SlsProvider("cn-hangzhou.log.aliyuncs.com", "p", "ls", "g", "")


def test_secrets_stay_out_of_reprs_and_errors(provider: sls.SlsProvider) -> None:
    creds = Credentials("id", "very-secret-key", "very-secret-token")
    request = provider.heartbeat_request({}, NOW, creds)
    assert "very-secret-key" not in repr(request) and "very-secret-key" not in repr(provider)
    assert "very-secret" not in repr(creds)
    error = error_for(401, {"errorCode": "Unauthorized", "errorMessage": "denied"})
    assert "very-secret" not in str(error)


# -- heartbeat answers


@pytest.mark.parametrize(
    ("body", "ids"),
    [(b"[0,1]", {0, 1}), (b" [ 3 , 1 ]\n", {1, 3}), (b"[2,2]", {2}), (b"[2147483647]", {2**31 - 1})],
)
def test_parse_heartbeat_valid(provider: sls.SlsProvider, body: bytes, ids: set[int]) -> None:
    assert provider.parse_heartbeat(answer(200, body)) == {"my-logstore": frozenset(ids)}


def test_parse_heartbeat_empty_array_is_an_empty_assignment(provider: sls.SlsProvider) -> None:
    assert provider.parse_heartbeat(answer(200, b"[]")) == {}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "empty body"),
        (b"not json", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[0,", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b"{}", "got an object"),
        (b'{"shards":[0]}', "got an object"),
        (b"null", "got null"),
        (b"0", "got an integer"),
        (b'"[0]"', "got a string"),
        (b"[true]", "a boolean"),
        (b"[-1]", "an integer -1"),
        (b"[2147483648]", "an integer"),
        (b"[1.0]", "a number"),
        (b'["1"]', "a string"),
        (b"[null]", "null"),
        (b"[[0]]", "an array"),
        (b"[NaN]", "a number"),
        (b"[" + b"1" * 5000 + b"]", "not JSON"),
        (b"[" + b"0," * 600_000 + b"0]", "larger than any valid answer"),
    ],
)
def test_parse_heartbeat_rejects_malformed(provider: sls.SlsProvider, body: bytes, why: str) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.parse_heartbeat(answer(200, body))
    error = caught.value
    assert (error.code, error.status, error.retry, error.request_id) == (
        "InvalidResponse",
        200,
        Retry.FAST,
        "REQ-1",
    )
    assert why in error.message
    assert len(error.message) < 400


def test_parse_heartbeat_non_200_maps_the_error(provider: sls.SlsProvider) -> None:
    body = json.dumps({"errorCode": "NotExistConsumerWithBody", "errorMessage": "consumer not exist"})
    with pytest.raises(ProviderError) as caught:
        provider.parse_heartbeat(answer(400, body))
    assert (caught.value.code, caught.value.retry) == ("NotExistConsumerWithBody", Retry.REJOIN)


@settings(max_examples=150, deadline=None)
@given(status=st.sampled_from([200, 400, 403, 404, 429, 500, 502]), body=st.binary(max_size=64))
def test_any_answer_gives_an_assignment_or_a_provider_error(status: int, body: bytes) -> None:
    provider = provider_for(VECTORS[0])
    try:
        result = provider.parse_heartbeat(answer(status, body))
    except ProviderError as error:
        assert error.status == status
    else:
        assert status == 200 and set(result) <= {"my-logstore"}
    assert isinstance(sls.error_from_response(answer(status, body)), ProviderError)


# -- error mapping


def error_for(status: int, body: object, request_id: str | None = "REQ-1") -> ProviderError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return sls.error_from_response(answer(status, raw, request_id))


@pytest.mark.parametrize(
    ("status", "code", "retry"),
    [
        (400, "NotExistConsumerWithBody", Retry.REJOIN),
        (400, "RequestTimeExpired", Retry.RESIGN),
        (500, "InternalServerError", Retry.FAST),
        (503, "ServerBusy", Retry.FAST),
        (403, "ExceedQuota", Retry.FAST),
        (429, "SomethingThrottled", Retry.FAST),
        (502, "BadGateway", Retry.FAST),
        (401, "Unauthorized", Retry.SLOW),
        (401, "SignatureNotMatch", Retry.SLOW),
        (401, "InvalidAccessKeyId", Retry.SLOW),
        (403, "SomePermissionDenied", Retry.SLOW),
        (404, "ProjectNotExist", Retry.SLOW),
        (404, "LogStoreNotExist", Retry.SLOW),
        (404, "ConsumerGroupNotExist", Retry.SLOW),
        (400, "ConsumerGroupAlreadyExist", Retry.SLOW),
        (400, "JsonInfoInvalid", Retry.SLOW),
        (418, "Teapot", Retry.SLOW),
    ],
)
def test_error_codes_map_to_retry_policies(status: int, code: str, retry: Retry) -> None:
    error = error_for(status, {"errorCode": code, "errorMessage": f"message of {code}"})
    assert (error.code, error.message, error.status, error.request_id) == (
        code,
        f"message of {code}",
        status,
        "REQ-1",
    )
    assert error.retry is retry


def test_error_without_request_id() -> None:
    assert error_for(500, {"errorCode": "InternalServerError", "errorMessage": "x"}, None).request_id is None


@pytest.mark.parametrize(
    ("status", "body", "retry", "why"),
    [
        (502, b"<html><body>Bad Gateway</body></html>", Retry.FAST, "not JSON"),
        (404, b"", Retry.SLOW, "empty body"),
        (403, b"[1,2]", Retry.SLOW, "not an SLS error body (an array)"),
        (400, b'{"errorCode": 5, "errorMessage": "x"}', Retry.SLOW, "not an SLS error body (an object)"),
        (400, b'{"errorCode": "", "errorMessage": "x"}', Retry.SLOW, "not an SLS error body"),
        (503, b"x" * 5_000_000, Retry.FAST, "larger than any valid answer"),
        (500, b"<" * 10_000, Retry.FAST, "(10000 in all)"),
        (301, b"Moved", Retry.SLOW, "not JSON"),
    ],
)
def test_malformed_error_bodies_give_invalid_response(
    status: int, body: bytes, retry: Retry, why: str
) -> None:
    error = error_for(status, body)
    assert (error.code, error.status, error.retry) == ("InvalidResponse", status, retry)
    assert why in error.message and f"HTTP {status}" in error.message
    assert len(error.message) < 400


def test_error_without_message_keeps_its_code() -> None:
    error = error_for(400, {"errorCode": "RequestTimeExpired"})
    assert (error.code, error.retry) == ("RequestTimeExpired", Retry.RESIGN)
    assert "no errorMessage" in error.message


def test_server_text_is_clipped_to_one_line() -> None:
    error = error_for(
        500, {"errorCode": "InternalServerError", "errorMessage": "line1\nline2\x1b" + "m" * 10_000}
    )
    assert "\n" not in error.message and "\x1b" not in error.message
    assert error.message.startswith("line1 line2") and len(error.message) < 600
    long_id = sls.error_from_response(answer(500, b"[]", "r" * 10_000)).request_id
    assert long_id is not None and len(long_id) < 200


def test_server_time_reads_the_date_header() -> None:
    date = VECTORS[0]["date"]
    assert sls.server_time(HttpResponse(400, {"date": date}, b"")) == NOW
    assert sls.server_time(HttpResponse(400, {}, b"")) is None
    assert sls.server_time(HttpResponse(400, {"date": "yesterday"}, b"")) is None


# -- group answers


def test_parse_list_groups(provider: sls.SlsProvider) -> None:
    body = json.dumps(
        [{"name": "g1", "timeout": 40, "order": False}, {"name": "g2", "timeout": 60, "order": True}]
    )
    assert provider.parse_list_groups(answer(200, body)) == [
        ServerGroup("g1", 40, order=False),
        ServerGroup("g2", 60, order=True),
    ]
    assert provider.parse_list_groups(answer(200, b"[]")) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b"[1]",
        b'[{"name": "g"}]',
        b'[{"name": "g", "timeout": true, "order": false}]',
        b'[{"name": "g", "timeout": 40, "order": "false"}]',
        b'[{"name": "", "timeout": 40, "order": false}]',
        b'[{"name": 3, "timeout": 40, "order": false}]',
    ],
)
def test_parse_list_groups_rejects_malformed(provider: sls.SlsProvider, body: bytes) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.parse_list_groups(answer(200, body))
    assert caught.value.code == "InvalidResponse"


def test_parse_list_groups_error(provider: sls.SlsProvider) -> None:
    body = {"errorCode": "LogStoreNotExist", "errorMessage": "logstore my-logstore dose not exist"}
    with pytest.raises(ProviderError) as caught:
        provider.parse_list_groups(answer(404, json.dumps(body)))
    assert (caught.value.code, caught.value.retry) == ("LogStoreNotExist", Retry.SLOW)


def test_parse_group_change(provider: sls.SlsProvider) -> None:
    provider.parse_group_change(answer(200, b""))  # no error
    body = {"errorCode": "ConsumerGroupAlreadyExist", "errorMessage": "consumer group already exist"}
    with pytest.raises(ProviderError) as caught:
        provider.parse_group_change(answer(400, json.dumps(body)))
    assert (caught.value.code, caught.value.status) == ("ConsumerGroupAlreadyExist", 400)
