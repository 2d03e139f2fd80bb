"""ClsProvider: request bytes and headers (checked against the `cls_tc3` vectors), answers, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shardbeat
from shardbeat.providers.base import Credentials, HttpRequest, HttpResponse, ProviderError, Retry, ServerGroup
from shardbeat.providers.cls import (
    ClsProvider,
    authorization_tc3,
    canonical_request_tc3,
    error_from_response,
    is_group_exists,
    parse_authorization_tc3,
    signature_tc3,
    string_to_sign_tc3,
)

VECTORS: dict[str, dict[str, Any]] = {
    v["name"]: v for v in json.loads((Path(__file__).parent / "vectors.json").read_text())["cls_tc3"]
}
COMPACT = VECTORS["compact body as in the API doc"]
COMPACT_BODY = json.loads(COMPACT["body"])
CREDS = Credentials(COMPACT["secret_id"], COMPACT["secret_key"])
T1, T2, T3 = "topic-one", "topic-two", "topic-three"
JSON = {"content-type": "application/json"}


def compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def provider(
    endpoint: str | None = "cls.tencentcloudapi.com", topics: tuple[str, ...] = (T1, T2)
) -> ClsProvider:
    return ClsProvider(endpoint, "ap-guangzhou", "logset-1", topics, "group-1", "consumer-1")


def header(request: HttpRequest, name: str) -> str | None:
    values = [value for key, value in request.headers if key.lower() == name.lower()]
    assert len(values) <= 1, f"header {name} sent twice"
    return values[0] if values else None


def verifies(request: HttpRequest, secret: str) -> bool:
    """Verify the way the emulator does, from the headers as sent."""
    received = {key.lower(): value for key, value in request.headers}
    auth = parse_authorization_tc3(received["authorization"])
    assert auth is not None
    timestamp = int(received["x-tc-timestamp"])
    canonical = canonical_request_tc3(request.method, "/", "", received, auth.signed_headers, request.body)
    to_sign = string_to_sign_tc3(timestamp, auth.service, canonical)
    return signature_tc3(secret, timestamp, auth.service, to_sign) == auth.signature


def answer(response: object, *, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, JSON if headers is None else headers, json.dumps(response).encode())


# --- heartbeat requests -----------------------------------------------------------------------


def vector_provider(vector: dict[str, Any]) -> ClsProvider:
    body = json.loads(vector["body"])
    topics = [item["TopicID"] for item in body["TopicPartitionsInfo"]]
    return ClsProvider(
        vector["host"], vector["region"], body["LogsetId"], topics, body["ConsumerGroup"], body["Consumer"]
    )


def vector_claim(vector: dict[str, Any]) -> dict[str, frozenset[int]]:
    items = json.loads(vector["body"])["TopicPartitionsInfo"]
    return {item["TopicID"]: frozenset(item["Partitions"]) for item in items}


def test_heartbeat_reproduces_the_compact_vector_byte_for_byte() -> None:
    request = vector_provider(COMPACT).heartbeat_request(
        vector_claim(COMPACT), COMPACT["timestamp"] + 0.9, CREDS
    )
    assert request.method == "POST"
    assert request.target == "/"
    assert request.body == COMPACT["body"].encode()
    assert header(request, "Authorization") == COMPACT["authorization"]
    assert header(request, "Host") == COMPACT["host"]
    assert header(request, "Content-Type") == "application/json"
    assert header(request, "X-TC-Action") == COMPACT["action"] == "SendConsumerHeartbeat"
    assert header(request, "X-TC-Version") == COMPACT["version"]
    assert header(request, "X-TC-Region") == COMPACT["region"]
    assert header(request, "X-TC-Timestamp") == str(COMPACT["timestamp"])
    assert header(request, "X-TC-RequestClient") == f"shardbeat/{shardbeat.__version__}"
    assert header(request, "X-TC-Token") is None


def test_token_is_sent_only_with_a_token_and_is_not_signed() -> None:
    with_token = Credentials(CREDS.key_id, CREDS.secret, "session-token")
    request = vector_provider(COMPACT).heartbeat_request(
        vector_claim(COMPACT), COMPACT["timestamp"], with_token
    )
    assert header(request, "X-TC-Token") == "session-token"
    assert header(request, "Authorization") == COMPACT["authorization"]
    assert "x-tc-token" not in parse_authorization_tc3(COMPACT["authorization"]).signed_headers  # type: ignore[union-attr]


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_heartbeat_signature_verifies_against_each_vector_host(name: str) -> None:
    # Our body is compact, so only the signing inputs are shared: same host, time and keys.
    vector = VECTORS[name]
    request = vector_provider(vector).heartbeat_request(vector_claim(vector), vector["timestamp"], CREDS)
    assert header(request, "Host") == vector["host"]
    assert verifies(request, vector["secret_key"])
    assert header(request, "Authorization") == authorization_tc3(
        vector["secret_id"], vector["secret_key"], vector["timestamp"], vector["host"], request.body
    )


@pytest.mark.parametrize(
    ("endpoint", "scheme", "port", "host_header"),
    [
        (None, "https", 443, "cls.ap-guangzhou.tencentcloudapi.com"),
        ("http://127.0.0.1:8080", "http", 8080, "127.0.0.1:8080"),
        ("cls.tencentcloudapi.com:8443", "https", 8443, "cls.tencentcloudapi.com:8443"),
        ("https://cls.tencentcloudapi.com:443", "https", 443, "cls.tencentcloudapi.com"),
        ("http://localhost:80", "http", 80, "localhost"),
    ],
)
def test_host_header_carries_a_non_default_port(
    endpoint: str | None, scheme: str, port: int, host_header: str
) -> None:
    cls = provider(endpoint)
    assert (cls.endpoint.scheme, cls.endpoint.port, cls.endpoint.host_header) == (scheme, port, host_header)
    request = cls.heartbeat_request({}, 1551113065, CREDS)
    assert header(request, "Host") == host_header
    signed_host = canonical_request_tc3("POST", "/", "", {"host": host_header}, ["host"], b"").split("\n")[3]
    assert signed_host == f"host:{host_header}"
    assert verifies(request, CREDS.secret)
    assert not verifies(HttpRequest("POST", "/", request.headers, request.body + b" "), CREDS.secret)


def test_first_heartbeat_lists_every_topic_empty() -> None:
    request = provider(topics=(T1, T2, T3)).heartbeat_request({}, 1551113065, CREDS)
    assert request.body == compact(
        {
            "ConsumerGroup": "group-1",
            "Consumer": "consumer-1",
            "LogsetId": "logset-1",
            "TopicPartitionsInfo": [
                {"TopicID": T1, "Partitions": []},
                {"TopicID": T2, "Partitions": []},
                {"TopicID": T3, "Partitions": []},
            ],
        }
    )


def test_heartbeat_sorts_partitions_and_keeps_empty_topics() -> None:
    request = provider().heartbeat_request({T2: frozenset({5, 1, 3})}, 1551113065, CREDS)
    assert json.loads(request.body)["TopicPartitionsInfo"] == [
        {"TopicID": T1, "Partitions": []},
        {"TopicID": T2, "Partitions": [1, 3, 5]},
    ]


def test_heartbeat_refuses_a_claim_on_an_unconfigured_topic() -> None:
    with pytest.raises(ValueError, match="not configured"):
        provider().heartbeat_request({"elsewhere": frozenset({1})}, 1551113065, CREDS)


names = st.text(min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    group=names,
    consumer=names,
    topics=st.lists(names, min_size=1, max_size=4, unique=True),
    data=st.data(),
)
def test_heartbeat_body_is_the_compact_json_of_its_content(
    group: str, consumer: str, topics: list[str], data: st.DataObject
) -> None:
    claim = {t: frozenset(data.draw(st.sets(st.integers(0, 2**31)), label=t)) for t in topics}
    cls = ClsProvider(None, "ap-guangzhou", 'logset-"1"', topics, group, consumer)
    request = cls.heartbeat_request(claim, 1551113065.5, CREDS)
    expected = {
        "ConsumerGroup": group,
        "Consumer": consumer,
        "LogsetId": 'logset-"1"',
        "TopicPartitionsInfo": [{"TopicID": t, "Partitions": sorted(claim[t])} for t in topics],
    }
    assert request.body == compact(expected)
    assert verifies(request, CREDS.secret)


def test_signing_key_cache_follows_the_date_and_the_secret() -> None:
    cls = provider()
    rotated = Credentials("AKIDother", "another-secret")
    for now, creds in [(1551139199, CREDS), (1551139200, CREDS), (1551139201, rotated), (1551139199, CREDS)]:
        request = cls.heartbeat_request({}, now, creds)
        assert header(request, "Authorization") == authorization_tc3(
            creds.key_id, creds.secret, now, "cls.tencentcloudapi.com", request.body
        )


def test_secrets_stay_out_of_reprs() -> None:
    secret, token = "s3cr3t-key-value", "t0ken-value"
    cls = provider()
    request = cls.heartbeat_request({}, 1551113065, Credentials("AKID", secret, token))
    assert secret not in repr(cls)
    assert secret not in repr(request)
    assert secret not in repr(Credentials("AKID", secret, token))
    assert token not in repr(cls)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"topics": ()},
        {"topics": ("a", "a")},
        {"topics": ("a", "")},
        {"topics": "abc"},
        {"region": "ap-guangzhou\r\nX-Evil: 1"},
        {"region": ""},
        {"logset_id": ""},
        {"consumer_group": ""},
        {"consumer": ""},
        {"endpoint": "ftp://cls.tencentcloudapi.com"},
        {"endpoint": "cls.tencentcloudapi.com/path"},
    ],
)
def test_constructor_refuses_bad_settings(kwargs: dict[str, Any]) -> None:
    settings_ = {
        "endpoint": None,
        "region": "ap-guangzhou",
        "logset_id": "l",
        "topics": ("t",),
        "consumer_group": "g",
        "consumer": "c",
        **kwargs,
    }
    with pytest.raises(ValueError):
        ClsProvider(**settings_)


# --- group bootstrap requests ------------------------------------------------------------------


def test_group_requests_are_signed_actions_with_their_parameters() -> None:
    cls = provider()
    cases = [
        (
            cls.describe_groups_request(1551113065, CREDS),
            "DescribeConsumerGroups",
            {"LogsetId": "logset-1", "Topics": [T1, T2]},
        ),
        (
            cls.setup_group_request(40, True, 1551113065, CREDS),
            "CreateConsumerGroup",
            {"ConsumerGroup": "group-1", "Timeout": 40, "Topics": [T1, T2], "LogsetId": "logset-1"},
        ),
        (
            cls.setup_group_request(60, False, 1551113065, CREDS),
            "ModifyConsumerGroup",
            # Timeout alone: Topics would replace the group's topic list for every consumer.
            {"ConsumerGroup": "group-1", "Timeout": 60, "LogsetId": "logset-1"},
        ),
    ]
    for request, action, params in cases:
        assert header(request, "X-TC-Action") == action
        assert header(request, "X-TC-Version") == "2020-10-16"
        assert json.loads(request.body) == params
        assert verifies(request, CREDS.secret)


@pytest.mark.parametrize("timeout", [0, -1, True, 1.5])
def test_group_timeout_must_be_positive_seconds(timeout: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        provider().setup_group_request(timeout, True, 1551113065, CREDS)


# --- heartbeat answers -------------------------------------------------------------------------


def test_parse_heartbeat_returns_the_assignment() -> None:
    response = answer(
        {
            "Response": {
                "ConsumerGroup": "group-1",
                "TopicPartitionsInfo": [
                    {"TopicID": T1, "Partitions": [2, 1]},
                    {"TopicID": T2, "Partitions": []},
                ],
                "RequestId": "req-1",
                "SomethingNew": {"ignored": True},
            }
        }
    )
    assert provider().parse_heartbeat(response) == {T1: frozenset({1, 2})}
    assert error_from_response(response) is None


def test_parse_heartbeat_empty_assignment() -> None:
    response = answer({"Response": {"TopicPartitionsInfo": [], "RequestId": "r"}})
    assert provider().parse_heartbeat(response) == {}


def test_parse_heartbeat_merges_a_topic_listed_twice() -> None:
    info = [{"TopicID": T1, "Partitions": [1]}, {"TopicID": T1, "Partitions": [3, 1]}]
    response = answer({"Response": {"TopicPartitionsInfo": info, "RequestId": "r"}})
    assert provider().parse_heartbeat(response) == {T1: frozenset({1, 3})}


def test_parse_heartbeat_refuses_an_unconfigured_topic() -> None:
    info = [{"TopicID": T1, "Partitions": [1]}, {"TopicID": "stranger", "Partitions": [4]}]
    response = answer({"Response": {"TopicPartitionsInfo": info, "RequestId": "req-9"}})
    with pytest.raises(ProviderError) as caught:
        provider().parse_heartbeat(response)
    assert (caught.value.code, caught.value.retry, caught.value.request_id) == (
        "UnknownTopic",
        Retry.SLOW,
        "req-9",
    )
    assert "stranger" in caught.value.message


def invalid(response: HttpResponse) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider().parse_heartbeat(response)
    return caught.value


def raw(body: bytes, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(200, JSON if headers is None else headers, body)


# Broken envelopes: every action's parser and error_from_response refuse them.
MALFORMED_ENVELOPES = [
    raw(b""),
    raw(b"<html>gateway</html>"),
    raw(b"\xff\xfe{}"),
    raw(b"[" * 100_000 + b"]" * 100_000),
    raw(b'{"Response": ' + b"9" * 5000 + b"}"),
    raw(b" " * (4 << 20) + b'{"Response":{"TopicPartitionsInfo":[]}}'),
    answer(None),
    answer([]),
    answer({}),
    answer({"Response": None}),
    answer({"Response": []}),
    answer({"Response": "ok"}),
    answer({"Response": {"Error": "boom", "RequestId": "r"}}),
    answer({"Response": {"Error": {"Code": 5, "Message": "m"}, "RequestId": "r"}}),
    answer({"Response": {"Error": {"Message": "m"}, "TopicPartitionsInfo": []}}),
]
# A sound envelope whose heartbeat fields are wrong: the heartbeat parser refuses it.
MALFORMED_ASSIGNMENTS = [
    answer({"Response": {"RequestId": "r"}}),
    answer({"Response": {"TopicPartitionsInfo": None}}),
    answer({"Response": {"TopicPartitionsInfo": {}}}),
    answer({"Response": {"TopicPartitionsInfo": "[]"}}),
    answer({"Response": {"TopicPartitionsInfo": [None]}}),
    answer({"Response": {"TopicPartitionsInfo": [[T1, [1]]]}}),
    answer({"Response": {"TopicPartitionsInfo": [{"Partitions": [1]}]}}),
    answer({"Response": {"TopicPartitionsInfo": [{"TopicID": 7, "Partitions": [1]}]}}),
    answer({"Response": {"TopicPartitionsInfo": [{"TopicID": T1}]}}),
    answer({"Response": {"TopicPartitionsInfo": [{"TopicID": T1, "Partitions": None}]}}),
    answer({"Response": {"TopicPartitionsInfo": [{"TopicID": T1, "Partitions": "1"}]}}),
    answer({"Response": {"TopicPartitionsInfo": [{"TopicID": T1, "Partitions": [True]}]}}),
    answer({"Response": {"TopicPartitionsInfo": [{"TopicID": T1, "Partitions": [-1]}]}}),
    answer({"Response": {"TopicPartitionsInfo": [{"TopicID": T1, "Partitions": [1.0]}]}}),
    answer({"Response": {"TopicPartitionsInfo": [{"TopicID": T1, "Partitions": ["1"]}]}}),
    answer({"Response": {"TopicPartitionsInfo": [{"TopicID": T1, "Partitions": [None]}]}}),
]


def check_invalid(error: ProviderError) -> None:
    assert (error.code, error.retry, error.status) == ("InvalidResponse", Retry.FAST, 200)
    assert len(str(error)) < 300


@pytest.mark.parametrize("response", MALFORMED_ENVELOPES)
def test_malformed_envelopes_are_invalid_responses(response: HttpResponse) -> None:
    check_invalid(invalid(response))
    error = error_from_response(response)
    assert error is not None
    check_invalid(error)
    with pytest.raises(ProviderError):
        provider().parse_describe_groups(response)


@pytest.mark.parametrize("response", MALFORMED_ASSIGNMENTS)
def test_parse_heartbeat_refuses_malformed_assignments(response: HttpResponse) -> None:
    check_invalid(invalid(response))


@pytest.mark.parametrize(
    "content_type", [None, "text/html", "text/plain; charset=utf-8", "application/jsonp"]
)
def test_parse_heartbeat_refuses_another_content_type(content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    error = invalid(answer({"Response": {"TopicPartitionsInfo": [], "RequestId": "r"}}, headers=headers))
    assert error.code == "InvalidResponse"
    assert "Content-Type" in error.message


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_parse_heartbeat_tolerates_media_type_parameters_and_case(content_type: str) -> None:
    response = answer(
        {"Response": {"TopicPartitionsInfo": [], "RequestId": "r"}}, headers={"content-type": content_type}
    )
    assert provider().parse_heartbeat(response) == {}


def test_error_messages_are_clipped() -> None:
    response = answer(
        {"Response": {"Error": {"Code": "InternalError", "Message": "x" * 100_000}, "RequestId": "r"}}
    )
    error = invalid(response)
    assert error.code == "InternalError"
    assert len(error.message) < 300


# --- the error table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "retry"),
    [
        ("RequestLimitExceeded", Retry.FAST),
        ("RequestLimitExceeded.UinLimitExceeded", Retry.FAST),
        ("InternalError", Retry.FAST),
        ("InternalError.ServerError", Retry.FAST),
        ("ResourceUnavailable", Retry.FAST),
        ("ResourceUnavailable.Busy", Retry.FAST),
        ("AuthFailure.SignatureExpire", Retry.RESIGN),
        ("AuthFailure.SignatureFailure", Retry.SLOW),
        ("AuthFailure.SecretIdNotFound", Retry.SLOW),
        ("AuthFailure.InvalidAuthorization", Retry.SLOW),
        ("AuthFailure.TokenFailure", Retry.SLOW),
        ("AuthFailure", Retry.SLOW),
        ("OperationDenied", Retry.SLOW),
        ("OperationDenied.ACLFailed", Retry.SLOW),
        ("OperationDenied.AccountDestroy", Retry.SLOW),
        ("OperationDenied.AccountIsolate", Retry.SLOW),
        ("OperationDenied.AccountNotExists", Retry.SLOW),
        ("InvalidParameter", Retry.SLOW),
        ("InvalidParameter.Content", Retry.SLOW),
        ("MissingParameter", Retry.SLOW),
        ("UnknownParameter", Retry.SLOW),
        ("UnauthorizedOperation", Retry.SLOW),
        ("UnauthorizedOperation.Uin", Retry.SLOW),
        ("ResourceNotFound", Retry.SLOW),
        ("ResourceNotFound.TopicNotExist", Retry.SLOW),
        ("FailedOperation", Retry.SLOW),
        ("FailedOperation.ConsumerGroupNotExist", Retry.SLOW),
        # only whole dotted segments match: these are not the codes above
        ("InternalErrorish", Retry.SLOW),
        ("AuthFailure.SignatureExpired", Retry.SLOW),
        ("SomethingNew", Retry.SLOW),
    ],
)
def test_error_answers_map_to_retry(code: str, retry: Retry) -> None:
    response = answer(
        {"Response": {"Error": {"Code": code, "Message": f"about {code}"}, "RequestId": "req-7"}}
    )
    error = error_from_response(response)
    assert error is not None
    expected = (code, f"about {code}", retry, 200, "req-7")
    assert (error.code, error.message, error.retry, error.status, error.request_id) == expected
    raised = invalid(response)
    assert (raised.code, raised.retry, raised.request_id) == (code, retry, "req-7")


@pytest.mark.parametrize("status", [500, 502, 503, 504, 404, 403, 401, 301, 204])
def test_non_200_status_is_a_fast_retry(status: int) -> None:
    error_body = {
        "Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "m"}, "RequestId": "r"}
    }
    errors = []
    for response in (
        HttpResponse(status, {"content-type": "text/html"}, b"<html>" + b"x" * 50_000),
        answer(error_body, status=status),
    ):
        error = error_from_response(response)
        assert error is not None
        assert (error.code, error.retry, error.status) == ("HttpError", Retry.FAST, status)
        assert len(str(error)) < 300
        errors.append(error)
    assert errors[1].request_id == "r"
    assert "AuthFailure.SignatureFailure" in errors[1].message


def test_group_exists_is_recognised_from_the_message() -> None:
    message = "consumer group already exists"
    response = answer(
        {"Response": {"Error": {"Code": "FailedOperation", "Message": message}, "RequestId": "r"}}
    )
    error = error_from_response(response)
    assert error is not None and is_group_exists(error)
    other = answer({"Response": {"Error": {"Code": "FailedOperation", "Message": "quota"}, "RequestId": "r"}})
    other_error = error_from_response(other)
    assert other_error is not None and not is_group_exists(other_error)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["TopicID", "Partitions", "x"]), inner)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(
    info=json_values,
    items=st.lists(st.dictionaries(st.sampled_from(["TopicID", "Partitions"]), json_values | st.just(T1))),
    body=st.binary(max_size=40),
)
def test_parse_heartbeat_never_raises_anything_but_provider_error(info: Any, items: Any, body: bytes) -> None:
    cls = provider()
    for response in (
        answer({"Response": {"TopicPartitionsInfo": info}}),
        answer({"Response": {"TopicPartitionsInfo": items}}),
        raw(body),
    ):
        try:
            result = cls.parse_heartbeat(response)
        except ProviderError:
            continue
        assert set(result) <= set(cls.topics)
        assert all(ids and all(type(i) is int and i >= 0 for i in ids) for ids in result.values())


# --- DescribeConsumerGroups answers ------------------------------------------------------------


def test_parse_describe_groups() -> None:
    groups = [
        {"ConsumerGroup": "group-1", "Timeout": 40, "Topics": [T1, T2]},
        {"ConsumerGroup": "other", "Timeout": 60, "Topics": None},
    ]
    response = answer({"Response": {"ConsumerGroupsInfo": groups, "RequestId": "r"}})
    assert provider().parse_describe_groups(response) == [
        ServerGroup("group-1", 40, topics=(T1, T2)),
        ServerGroup("other", 60, topics=()),
    ]


def test_parse_describe_groups_null_is_none_but_absent_is_an_error() -> None:
    assert (
        provider().parse_describe_groups(answer({"Response": {"ConsumerGroupsInfo": None, "RequestId": "r"}}))
        == []
    )
    assert (
        provider().parse_describe_groups(answer({"Response": {"ConsumerGroupsInfo": [], "RequestId": "r"}}))
        == []
    )
    with pytest.raises(ProviderError) as caught:
        provider().parse_describe_groups(answer({"Response": {"RequestId": "r"}}))
    assert caught.value.code == "InvalidResponse"


@pytest.mark.parametrize(
    "entry",
    [
        None,
        "group-1",
        {"Timeout": 40, "Topics": []},
        {"ConsumerGroup": 1, "Timeout": 40, "Topics": []},
        {"ConsumerGroup": "g", "Topics": []},
        {"ConsumerGroup": "g", "Timeout": "40", "Topics": []},
        {"ConsumerGroup": "g", "Timeout": True, "Topics": []},
        {"ConsumerGroup": "g", "Timeout": -1, "Topics": []},
        {"ConsumerGroup": "g", "Timeout": 40, "Topics": "t"},
        {"ConsumerGroup": "g", "Timeout": 40, "Topics": [1]},
    ],
)
def test_parse_describe_groups_refuses_malformed_entries(entry: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        provider().parse_describe_groups(
            answer({"Response": {"ConsumerGroupsInfo": [entry], "RequestId": "r"}})
        )
    assert (caught.value.code, caught.value.request_id) == ("InvalidResponse", "r")


def test_parse_describe_groups_maps_errors() -> None:
    response = answer(
        {"Response": {"Error": {"Code": "AuthFailure.SignatureExpire", "Message": "m"}, "RequestId": "r"}}
    )
    with pytest.raises(ProviderError) as caught:
        provider().parse_describe_groups(response)
    assert caught.value.retry is Retry.RESIGN
