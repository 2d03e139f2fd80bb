"""The emulated CLS API: TC3 verification (against the official vectors) and the handlers,
driven in-process with injected clocks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from shardbeat.emulator import cls
from shardbeat.emulator.cls_auth import ClsError, authenticate
from shardbeat.emulator.fixtures import ClsCredential, load_fixtures
from shardbeat.emulator.model import EmuRequest, EmuResponse
from shardbeat.emulator.world import World
from shardbeat.providers import cls as wire
from shardbeat.providers.base import Credentials, HttpRequest, HttpResponse
from shardbeat.providers.cls import ClsProvider
from shardbeat.providers.tc3 import authorization_tc3

VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text())
NOW = 1_700_000_000.0
KEY = Credentials("emulator-secret-id", "emulator-secret-key")
STS = Credentials("emulator-sts-secret-id", "emulator-sts-secret-key", "emulator-cls-token")
TOPICS = ("demo-topic-a", "demo-topic-b")
HOST = "127.0.0.1:8099"


# -- TC3 verification against the official SDK vectors


def vector_request(vector: Mapping[str, Any], **changes: str | None) -> EmuRequest:
    headers: dict[str, str] = {
        "host": vector["host"],
        "content-type": "application/json",
        "x-tc-action": vector["action"],
        "x-tc-version": vector["version"],
        "x-tc-region": vector["region"],
        "x-tc-timestamp": str(vector["timestamp"]),
        "authorization": vector["authorization"],
    }
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return EmuRequest("POST", "/", {}, "", headers, vector["body"].encode())


def credentials_of(vector: Mapping[str, Any], token: str | None = None) -> dict[str, ClsCredential]:
    return {vector["secret_id"]: ClsCredential(vector["secret_id"], vector["secret_key"], token)}


def refused(req: EmuRequest, credentials: Mapping[str, ClsCredential], now: float) -> str:
    with pytest.raises(ClsError) as caught:
        authenticate(req, credentials, now)
    return caught.value.code


@pytest.mark.parametrize("vector", VECTORS["cls_tc3"], ids=lambda v: v["name"])
def test_tc3_vectors_verify(vector: Mapping[str, Any]) -> None:
    credentials = credentials_of(vector)
    now = float(vector["timestamp"])
    assert authenticate(vector_request(vector), credentials, now + 299).secret_id == vector["secret_id"]
    # X-TC-Token is not signed: a temporary credential's token can be added without re-signing
    with_token = vector_request(vector, x_tc_token="tok")
    assert authenticate(with_token, credentials_of(vector, "tok"), now)


@pytest.mark.parametrize("vector", VECTORS["cls_tc3"], ids=lambda v: v["name"])
def test_tc3_vectors_tampered_are_refused(vector: Mapping[str, Any]) -> None:
    credentials = credentials_of(vector)
    now = float(vector["timestamp"])
    req = vector_request(vector)
    assert refused(req, credentials, now + 301) == "AuthFailure.SignatureExpire"
    assert refused(req, credentials, now - 301) == "AuthFailure.SignatureExpire"
    changed = EmuRequest("POST", "/", {}, "", req.headers, req.body.replace(b"test-123-1", b"test-123-2"))
    assert refused(changed, credentials, now) == "AuthFailure.SignatureFailure"
    assert refused(vector_request(vector, host=vector["host"] + ":443"), credentials, now) == (
        "AuthFailure.SignatureFailure"
    )
    later = vector_request(vector, x_tc_timestamp=str(vector["timestamp"] + 1))
    assert refused(later, credentials, now) == "AuthFailure.SignatureFailure"
    assert refused(req, {}, now) == "AuthFailure.SecretIdNotFound"
    assert refused(req, credentials_of(vector, "tok"), now) == "AuthFailure.TokenFailure"
    assert refused(vector_request(vector, x_tc_token="tok"), credentials, now) == "AuthFailure.TokenFailure"
    other_day = vector["authorization"].replace("2019-02-25", "2019-02-24")
    assert refused(vector_request(vector, authorization=other_day), credentials, now) == (
        "AuthFailure.InvalidAuthorization"
    )
    assert refused(vector_request(vector, authorization="TC3-HMAC-SHA256 nonsense"), credentials, now) == (
        "AuthFailure.InvalidAuthorization"
    )
    assert refused(vector_request(vector, authorization=None), credentials, now) == (
        "AuthFailure.InvalidAuthorization"
    )
    assert refused(vector_request(vector, x_tc_timestamp=None), credentials, now) == "MissingParameter"


# -- handlers, in process


class FakeClock:
    def __init__(self) -> None:
        self.wall = NOW
        self.mono = 500.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(clock: FakeClock) -> World:
    return World(load_fixtures(None), wall=lambda: clock.wall, mono=lambda: clock.mono)


def provider(
    consumer: str = "c1", group: str = "demo-group", topics: tuple[str, ...] = TOPICS
) -> ClsProvider:
    return ClsProvider(f"http://{HOST}", "ap-guangzhou", "demo-logset", topics, group, consumer)


def to_emu(request: HttpRequest) -> EmuRequest:
    headers = {name.lower(): value for name, value in request.headers}
    return EmuRequest(request.method, request.target, {}, "", headers, request.body)


def send(world: World, request: HttpRequest | EmuRequest) -> EmuResponse:
    req = request if isinstance(request, EmuRequest) else to_emu(request)
    return cls.handle(world, req, cls.describe(req))


def raw(action: str, params: object, credentials: Credentials = KEY, now: float = NOW) -> EmuRequest:
    """A request signed by hand, for actions and bodies the provider does not build."""
    body = params if isinstance(params, bytes) else json.dumps(params).encode()
    headers = {
        "host": HOST,
        "content-type": "application/json",
        "x-tc-action": action,
        "x-tc-version": "2020-10-16",
        "x-tc-region": "ap-guangzhou",
        "x-tc-timestamp": str(int(now)),
        "authorization": authorization_tc3(credentials.key_id, credentials.secret, int(now), HOST, body),
    }
    if credentials.token:
        headers["x-tc-token"] = credentials.token
    return EmuRequest("POST", "/", {}, "", headers, body)


def answer(response: EmuResponse) -> dict[str, Any]:
    assert response.status == 200
    assert response.headers == [("Content-Type", "application/json")]
    doc = json.loads(response.body)
    assert set(doc) == {"Response"}
    assert isinstance(doc["Response"]["RequestId"], str) and doc["Response"]["RequestId"]
    return doc["Response"]  # type: ignore[no-any-return]


def error_code(response: EmuResponse) -> str:
    doc = answer(response)
    assert set(doc) == {"Error", "RequestId"} and set(doc["Error"]) == {"Code", "Message"}
    return doc["Error"]["Code"]  # type: ignore[no-any-return]


def beat(
    world: World, consumer: str, held: dict[str, set[int]], credentials: Credentials = KEY
) -> dict[str, Any]:
    claim = {topic: frozenset(ids) for topic, ids in held.items()}
    return answer(send(world, provider(consumer).heartbeat_request(claim, NOW, credentials)))


def assignment(doc: Mapping[str, Any]) -> dict[str, list[int]]:
    return {info["TopicID"]: info["Partitions"] for info in doc["TopicPartitionsInfo"]}


def test_heartbeat_answer_shape(world: World) -> None:
    doc = beat(world, "c1", {})
    assert set(doc) == {"ConsumerGroup", "TopicPartitionsInfo", "RequestId"}
    assert doc["ConsumerGroup"] == "demo-group"
    assert assignment(doc) == {"demo-topic-a": [1, 2], "demo-topic-b": [1, 2]}


def test_our_client_parses_the_answers(world: World) -> None:
    p = provider()
    response = send(world, p.heartbeat_request({}, NOW, KEY))
    parsed = p.parse_heartbeat(
        HttpResponse(response.status, {"content-type": "application/json"}, response.body)
    )
    assert parsed == {"demo-topic-a": frozenset({1, 2}), "demo-topic-b": frozenset({1, 2})}


def test_nothing_assigned_is_an_empty_list(world: World) -> None:
    beat(world, "c1", {})
    assert beat(world, "c2", {})["TopicPartitionsInfo"] == []


def test_two_consumers_balance_through_release(world: World) -> None:
    beat(world, "c1", {})
    beat(world, "c2", {})
    kept = assignment(beat(world, "c1", {"demo-topic-a": {1, 2}, "demo-topic-b": {1, 2}}))
    assert kept == {"demo-topic-a": [1, 2]}
    beat(world, "c1", {"demo-topic-a": {1, 2}})
    assert assignment(beat(world, "c2", {})) == {"demo-topic-b": [1, 2]}


def test_unknown_fields_and_dashes_in_names_are_accepted(world: World) -> None:
    params = {
        "ConsumerGroup": "demo-group",
        "Consumer": "test-123-1",
        "LogsetId": "demo-logset",
        "TopicPartitionsInfo": [{"TopicID": "demo-topic-a", "Partitions": []}],
        "PartitionStrategy": 2,
    }
    assert assignment(answer(send(world, raw("SendConsumerHeartbeat", params)))) == {
        "demo-topic-a": [1, 2],
        "demo-topic-b": [1, 2],
    }


def test_expired_consumer_is_registered_again(world: World, clock: FakeClock) -> None:
    beat(world, "c1", {})
    clock.mono += 6
    doc = beat(world, "c1", {"demo-topic-a": {1, 2}, "demo-topic-b": {1, 2}})
    assert assignment(doc) == {"demo-topic-a": [1, 2], "demo-topic-b": [1, 2]}


def test_token_credentials(world: World) -> None:
    assert beat(world, "c1", {}, STS)["ConsumerGroup"] == "demo-group"
    response = send(world, provider().heartbeat_request({}, NOW, Credentials(STS.key_id, STS.secret)))
    assert error_code(response) == "AuthFailure.TokenFailure"


def test_signature_window_follows_the_server_clock(world: World, clock: FakeClock) -> None:
    clock.wall += 299
    assert beat(world, "c1", {})["ConsumerGroup"] == "demo-group"
    clock.wall += 2
    assert (
        error_code(send(world, provider().heartbeat_request({}, NOW, KEY))) == "AuthFailure.SignatureExpire"
    )


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"Consumer": "c", "LogsetId": "demo-logset"}, "MissingParameter"),
        ({"ConsumerGroup": "demo-group", "LogsetId": "demo-logset"}, "MissingParameter"),
        ({"ConsumerGroup": "demo-group", "Consumer": "c"}, "MissingParameter"),
        ({"ConsumerGroup": "demo-group", "Consumer": "1c", "LogsetId": "demo-logset"}, "InvalidParameter"),
        ({"ConsumerGroup": "demo-group", "Consumer": "_c", "LogsetId": "demo-logset"}, "InvalidParameter"),
        ({"ConsumerGroup": "demo-group", "Consumer": "c" * 256, "LogsetId": "demo-logset"},
         "InvalidParameter"),
        ({"ConsumerGroup": "demo-group", "Consumer": 5, "LogsetId": "demo-logset"}, "InvalidParameter"),
        ({"ConsumerGroup": "nope", "Consumer": "c", "LogsetId": "demo-logset"}, "FailedOperation"),
        ({"ConsumerGroup": "demo-group", "Consumer": "c", "LogsetId": "nope"},
         "ResourceNotFound.LogsetNotExist"),
        ({"ConsumerGroup": "demo-group", "Consumer": "c", "LogsetId": "demo-logset",
          "TopicPartitionsInfo": [{"TopicID": "demo-topic-a", "Partitions": ["1"]}]}, "InvalidParameter"),
        ({"ConsumerGroup": "demo-group", "Consumer": "c", "LogsetId": "demo-logset",
          "TopicPartitionsInfo": {"TopicID": "demo-topic-a"}}, "InvalidParameter"),
        (b"[]", "InvalidParameter"),
        (b"{", "InvalidParameter"),
    ],
)  # fmt: skip
def test_bad_heartbeat_parameters(world: World, params: object, code: str) -> None:
    assert error_code(send(world, raw("SendConsumerHeartbeat", params))) == code


def test_version_and_action_are_checked(world: World) -> None:
    req = raw("SendConsumerHeartbeat", {})
    wrong_version = EmuRequest("POST", "/", {}, "", {**req.headers, "x-tc-version": "2017-03-12"}, req.body)
    assert error_code(send(world, wrong_version)) == "NoSuchVersion"
    assert error_code(send(world, raw("UploadLog", {}))) == "InvalidAction"


def test_rate_limit_of_twenty_heartbeats_per_second(world: World, clock: FakeClock) -> None:
    for index in range(20):
        beat(world, f"c{index}", {})
    request = provider("late").heartbeat_request({}, NOW, KEY)
    assert error_code(send(world, request)) == "RequestLimitExceeded"
    # other actions are not counted
    assert "ConsumerGroupsInfo" in answer(send(world, provider().describe_groups_request(NOW, KEY)))
    clock.mono += 1.0
    assert beat(world, "late", {})["ConsumerGroup"] == "demo-group"


def test_create_describe_modify_delete(world: World) -> None:
    p = provider(group="g2", topics=("demo-topic-a",))
    assert answer(send(world, p.setup_group_request(10, True, NOW, KEY)))["ConsumerGroup"] == "g2"
    duplicate = send(world, p.setup_group_request(10, True, NOW, KEY))
    assert error_code(duplicate) == "FailedOperation"
    error = wire.error_from_response(HttpResponse(200, {"content-type": "application/json"}, duplicate.body))
    assert error is not None and wire.is_group_exists(error)
    described = answer(send(world, p.describe_groups_request(NOW, KEY)))["ConsumerGroupsInfo"]
    assert described == [
        {"ConsumerGroup": "demo-group", "Timeout": 6, "Topics": ["demo-topic-a", "demo-topic-b"]},
        {"ConsumerGroup": "g2", "Timeout": 10, "Topics": ["demo-topic-a"]},
    ]
    only_b = raw("DescribeConsumerGroups", {"LogsetId": "demo-logset", "Topics": ["demo-topic-b"]})
    assert [g["ConsumerGroup"] for g in answer(send(world, only_b))["ConsumerGroupsInfo"]] == ["demo-group"]
    wider = provider(group="g2")  # both topics
    both = {"ConsumerGroup": "g2", "Timeout": 20, "Topics": ["demo-topic-a", "demo-topic-b"]}
    assert answer(send(world, raw("ModifyConsumerGroup", {**both, "LogsetId": "demo-logset"}))) is not None
    doc = answer(send(world, wider.heartbeat_request({}, NOW, KEY)))
    assert assignment(doc) == {"demo-topic-a": [1, 2], "demo-topic-b": [1, 2]}
    # update_group from a node configured with one topic changes the timeout, never the topic list
    # (it used to send its own Topics and drop demo-topic-b for every consumer).
    assert answer(send(world, p.setup_group_request(30, False, NOW, KEY))) is not None
    described = answer(send(world, p.describe_groups_request(NOW, KEY)))["ConsumerGroupsInfo"]
    assert {"ConsumerGroup": "g2", "Timeout": 30, "Topics": ["demo-topic-a", "demo-topic-b"]} in described
    assert set(
        answer(send(world, raw("DeleteConsumerGroup", {"ConsumerGroup": "g2", "LogsetId": "demo-logset"})))
    ) == {"RequestId"}
    assert error_code(send(world, wider.heartbeat_request({}, NOW, KEY))) == "FailedOperation"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"ConsumerGroup": "g", "Timeout": 10, "LogsetId": "demo-logset"}, "MissingParameter"),
        ({"ConsumerGroup": "g", "Timeout": 10, "Topics": ["x"], "LogsetId": "demo-logset"},
         "ResourceNotFound.TopicNotExist"),
        ({"ConsumerGroup": "g", "Timeout": 0, "Topics": ["demo-topic-a"], "LogsetId": "demo-logset"},
         "InvalidParameter"),
        ({"ConsumerGroup": "g", "Timeout": "10", "Topics": ["demo-topic-a"], "LogsetId": "demo-logset"},
         "InvalidParameter"),
        ({"ConsumerGroup": "9g", "Timeout": 10, "Topics": ["demo-topic-a"], "LogsetId": "demo-logset"},
         "InvalidParameter"),
    ],
)  # fmt: skip
def test_bad_create_parameters(world: World, params: object, code: str) -> None:
    assert error_code(send(world, raw("CreateConsumerGroup", params))) == code


def test_receipts(world: World) -> None:
    beat(world, "c1", {"demo-topic-a": {2}})
    send(
        world,
        raw("SendConsumerHeartbeat", {"ConsumerGroup": "nope", "Consumer": "c1", "LogsetId": "demo-logset"}),
    )
    receipts, _ = world.receipts()
    first, second = (r.to_json() for r in receipts)
    assert (first["service"], first["scope"], first["group"], first["consumer"]) == (
        "cls",
        "demo-logset",
        "demo-group",
        "c1",
    )
    assert first["held"] == {"demo-topic-a": [2], "demo-topic-b": []}
    assert first["assigned"] == {"demo-topic-a": [1, 2], "demo-topic-b": [1, 2]}
    assert (second["status"], second["error"], second["held"]) == (200, "FailedOperation", {})
