"""The emulated SLS API: signature verification (against the official vectors) and the handlers,
driven in-process with injected clocks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from shardbeat.emulator import sls
from shardbeat.emulator.fixtures import SlsCredential, load_fixtures
from shardbeat.emulator.model import EmuRequest, EmuResponse
from shardbeat.emulator.sls_auth import SlsError, authenticate
from shardbeat.emulator.world import World
from shardbeat.providers import sls as wire
from shardbeat.providers.base import Credentials, HttpRequest
from shardbeat.providers.sls import SlsProvider

VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text())
NOW = 1_700_000_000.0
KEY = Credentials("emulator-akid", "emulator-secret")
STS = Credentials("emulator-sts-akid", "emulator-sts-secret", "emulator-sts-token")


# -- signature verification against the official SDK vectors


def vector_request(vector: Mapping[str, Any]) -> tuple[EmuRequest, float]:
    body = vector["body"].encode()
    headers = {"host": vector["host"], "date": vector["date"], "content-length": str(len(body))}
    if body:
        headers |= {"content-type": vector["content_type"], "content-md5": vector["content_md5"]}
    headers |= vector["signed_headers"]
    headers["authorization"] = vector["authorization"]
    headers["x-log-date"] = vector["date"]  # the Python SDK adds it after signing
    query = dict(vector["query"])
    raw_query = "&".join(f"{k}={v}" for k, v in query.items())
    sent = parsedate_to_datetime(vector["date"]).timestamp()
    return EmuRequest(vector["method"], vector["path"], query, raw_query, headers, body), sent


def vector_credentials(vector: Mapping[str, Any]) -> dict[str, SlsCredential]:
    token = vector["signed_headers"].get("x-acs-security-token")
    return {
        vector["access_key_id"]: SlsCredential(vector["access_key_id"], vector["access_key_secret"], token)
    }


def with_headers(req: EmuRequest, **changes: str | None) -> EmuRequest:
    headers = dict(req.headers)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return EmuRequest(req.method, req.path, req.query, req.raw_query, headers, req.body)


def refused(req: EmuRequest, credentials: Mapping[str, SlsCredential], now: float) -> tuple[int, str]:
    with pytest.raises(SlsError) as caught:
        authenticate(req, credentials, now)
    return caught.value.status, caught.value.code


@pytest.mark.parametrize("vector", VECTORS["sls_v1"], ids=lambda v: v["name"])
def test_v1_vectors_verify(vector: Mapping[str, Any]) -> None:
    req, sent = vector_request(vector)
    credentials = vector_credentials(vector)
    assert authenticate(req, credentials, sent + 60).access_key_id == vector["access_key_id"]
    # x-log-date is not signed: a different value changes nothing
    assert authenticate(with_headers(req, x_log_date="garbage"), credentials, sent)


@pytest.mark.parametrize("vector", VECTORS["sls_v1"], ids=lambda v: v["name"])
def test_v1_vectors_tampered_are_refused(vector: Mapping[str, Any]) -> None:
    req, sent = vector_request(vector)
    credentials = vector_credentials(vector)
    bad_signature = vector["authorization"][:-5] + "AAAA="
    assert refused(with_headers(req, authorization=bad_signature), credentials, sent) == (
        401,
        "SignatureNotMatch",
    )
    assert refused(with_headers(req, x_log_apiversion="0.6.0", x_log_extra="1"), credentials, sent) == (
        401,
        "SignatureNotMatch",
    )
    other_date = "Sun, 06 May 2018 09:44:11 GMT"
    assert refused(with_headers(req, date=other_date), credentials, sent) == (401, "SignatureNotMatch")
    other_path = EmuRequest(req.method, req.path + "x", req.query, req.raw_query, req.headers, req.body)
    assert refused(other_path, credentials, sent) == (401, "SignatureNotMatch")
    assert refused(req, credentials, sent + 15 * 60 + 1) == (400, "RequestTimeExpired")
    assert refused(req, credentials, sent - 15 * 60 - 1) == (400, "RequestTimeExpired")
    assert refused(req, {}, sent) == (401, "Unauthorized")
    if req.body:
        changed = EmuRequest(req.method, req.path, req.query, req.raw_query, req.headers, req.body + b" ")
        assert refused(changed, credentials, sent) == (400, "InvalidContentMD5")
    token = vector["signed_headers"].get("x-acs-security-token")
    if token:
        assert refused(with_headers(req, x_acs_security_token="other"), credentials, sent)[0] == 401
        permanent = {
            vector["access_key_id"]: SlsCredential(vector["access_key_id"], vector["access_key_secret"])
        }
        assert refused(req, permanent, sent) == (401, "Unauthorized")
    else:
        temporary = {
            vector["access_key_id"]: SlsCredential(
                vector["access_key_id"], vector["access_key_secret"], "tok"
            )
        }
        assert refused(req, temporary, sent) == (401, "Unauthorized")


def test_v4_vector_verifies_and_tampering_is_refused() -> None:
    vector = VECTORS["sls_v4"][0]
    body = vector["body"].encode()
    headers = {
        "host": vector["host"],
        "content-type": "application/json",
        "x-log-apiversion": "0.6.0",
        "x-log-content-sha256": vector["x_log_content_sha256"],
        "x-log-date": vector["x_log_date"],
        "authorization": vector["authorization"],
        "user-agent": "not signed",
    }
    query = vector["query"]
    req = EmuRequest("POST", vector["path"], query, "type=heartbeat&consumer=consumer_1", headers, body)
    credentials = {
        vector["access_key_id"]: SlsCredential(vector["access_key_id"], vector["access_key_secret"])
    }
    sent = 1525599850.0  # 2018-05-06T09:44:10Z
    assert authenticate(req, credentials, sent).access_key_id == vector["access_key_id"]
    assert refused(with_headers(req, host="other.example.com"), credentials, sent) == (
        401,
        "SignatureNotMatch",
    )
    changed = EmuRequest("POST", vector["path"], query, "", headers, b"[1]")
    assert refused(changed, credentials, sent) == (400, "InvalidContentSha256")
    assert refused(req, credentials, sent + 901) == (400, "RequestTimeExpired")


def test_vectors_hold_what_the_verifier_assumes() -> None:
    # If these drift, the tests above no longer test what they claim.
    vector = VECTORS["sls_v1"][0]
    assert vector["body"] == "[0]" and vector["content_md5"] == "8D5162CA104FA7E79FE80FD92BB657FB"


# -- handlers, in process


class FakeClock:
    def __init__(self) -> None:
        self.wall = NOW
        self.mono = 1000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(clock: FakeClock) -> World:
    return World(load_fixtures(None), wall=lambda: clock.wall, mono=lambda: clock.mono)


def provider(consumer: str = "c1", group: str = "demo-group", project: str = "demo-project") -> SlsProvider:
    return SlsProvider("http://127.0.0.1:8099", project, "demo-logstore", group, consumer)


def to_emu(request: HttpRequest) -> EmuRequest:
    target = urlsplit(request.target)
    query = dict(parse_qsl(target.query, keep_blank_values=True))
    headers = {name.lower(): value for name, value in request.headers}
    return EmuRequest(request.method, unquote(target.path), query, target.query, headers, request.body)


def send(world: World, request: HttpRequest | EmuRequest) -> EmuResponse:
    req = request if isinstance(request, EmuRequest) else to_emu(request)
    return sls.handle(world, req, sls.describe(req))


def body(response: EmuResponse) -> Any:
    return json.loads(response.body)


def header(response: EmuResponse, name: str) -> str | None:
    return next((v for n, v in response.headers if n.lower() == name), None)


def beat(world: World, consumer: str, held: list[int], credentials: Credentials = KEY) -> EmuResponse:
    request = provider(consumer).heartbeat_request({"demo-logstore": frozenset(held)}, NOW, credentials)
    return send(world, request)


def assert_error(response: EmuResponse, status: int, code: str) -> dict[str, str]:
    assert response.status == status
    doc = body(response)
    assert set(doc) == {"errorCode", "errorMessage"}
    assert doc["errorCode"] == code
    assert header(response, "x-log-requestid")
    assert header(response, "content-type") == "application/json"
    return doc  # type: ignore[no-any-return]


def test_heartbeat_answers_a_bare_array_with_request_id(world: World) -> None:
    response = beat(world, "c1", [])
    assert response.status == 200
    assert response.body == b"[0,1,2,3]"
    assert len(header(response, "x-log-requestid") or "") == 24


def test_heartbeat_with_nothing_assigned_answers_an_empty_array_not_an_empty_body(world: World) -> None:
    beat(world, "c1", [])
    response = beat(world, "c2", [])
    assert (response.status, response.body) == (200, b"[]")


def test_two_consumers_rebalance_through_release(world: World, clock: FakeClock) -> None:
    beat(world, "c1", [])
    assert body(beat(world, "c2", [])) == []
    assert body(beat(world, "c1", [0, 1, 2, 3])) == [0, 1]
    assert body(beat(world, "c1", [0, 1])) == [0, 1]
    assert body(beat(world, "c2", [])) == [2, 3]


def test_object_form_is_accepted_leniently(world: World) -> None:
    request = provider().heartbeat_request({}, NOW, KEY)
    headers = [(n, v) for n, v in request.headers if n.lower() not in ("content-md5", "authorization")]
    req = signed(request.method, request.target, b'{"shards": []}', dict(headers))
    response = send(world, req)
    assert (response.status, response.body) == (200, b"[0,1,2,3]")


def test_timed_out_consumer_gets_not_exist_consumer_with_body_and_empty_claim_rejoins(
    world: World, clock: FakeClock
) -> None:
    assert body(beat(world, "c1", [])) == [0, 1, 2, 3]
    clock.mono += 6.0
    doc = assert_error(beat(world, "c1", [0, 1, 2, 3]), 400, "NotExistConsumerWithBody")
    assert "c1" in doc["errorMessage"]
    assert body(beat(world, "c1", [])) == [0, 1, 2, 3]


def test_receipts_record_claims_answers_and_errors(world: World, clock: FakeClock) -> None:
    beat(world, "c1", [])
    clock.mono += 10
    beat(world, "c1", [1])
    receipts, next_seq = world.receipts()
    assert next_seq == 2
    first, second = (r.to_json() for r in receipts)
    assert first["held"] == {"demo-logstore": []} and first["assigned"] == {"demo-logstore": [0, 1, 2, 3]}
    assert (first["service"], first["scope"], first["group"], first["consumer"]) == (
        "sls",
        "demo-project/demo-logstore",
        "demo-group",
        "c1",
    )
    assert (first["status"], first["error"], first["mono"]) == (200, None, 1000.0)
    assert (second["status"], second["error"], second["assigned"]) == (400, "NotExistConsumerWithBody", None)
    assert [r.seq for r in world.receipts(1)[0]] == [1]


def test_sts_credential_needs_its_token(world: World) -> None:
    assert beat(world, "c1", [], STS).status == 200
    no_token = Credentials(STS.key_id, STS.secret)
    assert assert_error(beat(world, "c2", [], no_token), 401, "Unauthorized")["errorMessage"] == (
        "The security token you provided is invalid."
    )
    assert_error(beat(world, "c2", [], Credentials(STS.key_id, STS.secret, "wrong")), 401, "Unauthorized")
    assert_error(
        beat(world, "c2", [], Credentials(KEY.key_id, KEY.secret, "unexpected")), 401, "Unauthorized"
    )


def test_wrong_key_and_unknown_key(world: World) -> None:
    assert_error(beat(world, "c1", [], Credentials(KEY.key_id, "wrong")), 401, "SignatureNotMatch")
    doc = assert_error(beat(world, "c1", [], Credentials("nobody", "x")), 401, "Unauthorized")
    assert doc["errorMessage"] == "AccessKeyId not found: nobody"


def test_clock_skew_beyond_15_minutes_is_refused(world: World) -> None:
    world.skew = 14 * 60
    assert beat(world, "c1", []).status == 200
    world.skew = -(15 * 60 + 2)
    assert_error(beat(world, "c1", []), 400, "RequestTimeExpired")


def test_unknown_project_logstore_group(world: World) -> None:
    request = provider(project="nope").heartbeat_request({}, NOW, KEY)
    doc = assert_error(send(world, request), 404, "ProjectNotExist")
    assert doc["errorMessage"] == "The Project does not exist : nope"
    other_store = SlsProvider("http://127.0.0.1:8099", "demo-project", "gone", "demo-group", "c1")
    doc = assert_error(send(world, other_store.heartbeat_request({}, NOW, KEY)), 404, "LogStoreNotExist")
    assert doc["errorMessage"] == "logstore gone dose not exist"
    request = provider(group="nope").heartbeat_request({}, NOW, KEY)
    doc = assert_error(send(world, request), 404, "ConsumerGroupNotExist")
    assert doc["errorMessage"] == "consumer group not exist"


def test_create_list_update_delete(world: World) -> None:
    p = provider(group="g2")
    assert send(world, p.create_group_request(20, True, NOW, KEY)).status == 200
    assert_error(send(world, p.create_group_request(20, True, NOW, KEY)), 400, "ConsumerGroupAlreadyExist")
    listed = body(send(world, p.list_groups_request(NOW, KEY)))
    assert listed == [
        {"name": "demo-group", "timeout": 6, "order": False},
        {"name": "g2", "timeout": 20, "order": True},
    ]
    assert send(world, p.update_group_request(30, None, NOW, KEY)).status == 200
    assert {"name": "g2", "timeout": 30, "order": True} in body(send(world, p.list_groups_request(NOW, KEY)))
    assert send(world, signed("DELETE", "/logstores/demo-logstore/consumergroups/g2", b"")).status == 200
    request = p.heartbeat_request({}, NOW, KEY)
    assert_error(send(world, request), 404, "ConsumerGroupNotExist")


def test_update_timeout_takes_effect(world: World, clock: FakeClock) -> None:
    beat(world, "c1", [])
    p = provider()
    assert send(world, p.update_group_request(2, None, NOW, KEY)).status == 200
    clock.mono += 2.5
    assert_error(beat(world, "c1", [0]), 400, "NotExistConsumerWithBody")


@pytest.mark.parametrize(
    "payload",
    [b"{", b"[]", b'{"consumerGroup": "g", "timeout": "20"}', b'{"consumerGroup": "", "timeout": 20}',
     b'{"consumerGroup": "g", "timeout": 0}', b'{"consumerGroup": "g", "timeout": 20, "order": 1}'],
)  # fmt: skip
def test_create_with_bad_json_info(world: World, payload: bytes) -> None:
    response = send(world, signed("POST", "/logstores/demo-logstore/consumergroups", payload))
    assert_error(response, 400, "JsonInfoInvalid")


def test_thirty_groups_per_logstore_at_most(world: World) -> None:
    for index in range(29):
        assert (
            send(world, provider(group=f"g{index}").create_group_request(10, False, NOW, KEY)).status == 200
        )
    assert_error(send(world, provider(group="one-too-many").create_group_request(10, False, NOW, KEY)), 400,
                 "ConsumerGroupQuotaExceed")  # fmt: skip


@pytest.mark.parametrize(
    "payload", [b"[0, -1]", b"[true]", b'["0"]', b"{}", b"[[0]]", b"nonsense", b"[1e400]"]
)
def test_malformed_heartbeat_bodies_are_refused_cleanly(world: World, payload: bytes) -> None:
    target = "/logstores/demo-logstore/consumergroups/demo-group?type=heartbeat&consumer=c1"
    assert_error(send(world, signed("POST", target, payload)), 400, "PostBodyInvalid")


def test_python_sdk_header_set_without_bodyrawsize_is_fine(world: World) -> None:
    target = "/logstores/demo-logstore/consumergroups/demo-group?type=heartbeat&consumer=c1"
    response = send(world, signed("POST", target, b"[]", drop=("x-log-bodyrawsize",)))
    assert (response.status, response.body) == (200, b"[0,1,2,3]")


@pytest.mark.parametrize(
    ("drop", "status", "code"),
    [
        (("date",), 400, "MissingDate"),
        (("x-log-apiversion",), 400, "MissingAPIVersion"),
        (("x-log-signaturemethod",), 400, "MissingSignatureMethod"),
        (("authorization",), 400, "MissAccessKeyId"),
        (("content-md5",), 400, "InvalidContentMD5"),
        (("content-type",), 400, "MissingContentType"),
        (("host",), 400, "MissingHost"),
    ],
)
def test_missing_headers(world: World, drop: tuple[str, ...], status: int, code: str) -> None:
    target = "/logstores/demo-logstore/consumergroups/demo-group?type=heartbeat&consumer=c1"
    assert_error(send(world, signed("POST", target, b"[]", drop=drop)), status, code)


def test_unimplemented_api_is_named(world: World) -> None:
    target = "/logstores/demo-logstore/consumergroups/demo-group?type=rewind&consumer=c1"
    doc = assert_error(send(world, signed("POST", target, b'{"shard": 0}')), 404, "EmulatorUnsupported")
    assert "does not implement" in doc["errorMessage"]
    # UpdateCheckPoint is implemented (sls_checkpoints.py): a body without a checkpoint is refused as such
    target = "/logstores/demo-logstore/consumergroups/demo-group?type=checkpoint&consumer=c1"
    assert_error(send(world, signed("POST", target, b'{"shard": 0}')), 400, "PostBodyInvalid")


def test_describe_names_the_call() -> None:
    req = to_emu(provider("c9").heartbeat_request({"demo-logstore": frozenset({2, 1})}, NOW, KEY))
    call = sls.describe(req)
    assert (call.service, call.action, call.scope, call.group, call.consumer) == (
        "sls",
        "HeartBeat",
        "demo-project/demo-logstore",
        "demo-group",
        "c9",
    )
    assert call.held == {"demo-logstore": [1, 2]} and call.is_heartbeat


def signed(
    method: str,
    target: str,
    payload: bytes,
    extra: dict[str, str] | None = None,
    *,
    drop: tuple[str, ...] = (),
) -> EmuRequest:
    """A v1-signed request built by hand (the client side of these tests), then headers dropped."""
    parts = urlsplit(target)
    query = dict(parse_qsl(parts.query))
    headers = {"host": "demo-project.127.0.0.1:8099", "date": wire.rfc1123(NOW)}
    headers |= {"x-log-apiversion": "0.6.0", "x-log-signaturemethod": "hmac-sha1", "x-log-bodyrawsize": "0"}
    headers |= {k.lower(): v for k, v in (extra or {}).items() if k.lower() in ("host",)}
    if payload:
        headers |= {"content-type": "application/json", "content-md5": wire.content_md5(payload)}
    for name in drop:
        if name != "authorization":
            headers.pop(name, None)
    to_sign = wire.string_to_sign_v1(
        method,
        headers.get("content-md5", ""),
        headers.get("content-type", ""),
        headers.get("date", ""),
        headers.items(),
        wire.canonical_resource(parts.path, query),
    )
    if "authorization" not in drop:
        headers["authorization"] = f"LOG {KEY.key_id}:{wire.sign_v1(KEY.secret, to_sign)}"
    return EmuRequest(method, parts.path, query, parts.query, headers, payload)
