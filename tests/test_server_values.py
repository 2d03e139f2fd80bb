"""Server-derived numbers and strings at the provider boundary (issue 9, items 2, 4 and 11), and what
the runner does with them: a group timeout of 10^12 s, an id past 2^64, a Date in the year 9999,
text with control characters or lone surrogates, request ids of every shape; error classification
as the official SDKs see it."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from harness import wait_for
from shardbeat.config import config_from_dict
from shardbeat.emulator.server import EmulatorServer
from shardbeat.providers import cls as cls_wire
from shardbeat.providers import server_values
from shardbeat.providers import sls as sls_wire
from shardbeat.providers.base import Endpoint, HttpRequest, HttpResponse, ProviderError, Retry
from shardbeat.providers.cls import ClsProvider
from shardbeat.providers.sls import SlsProvider
from shardbeat.runtime.output import RecordWriter
from shardbeat.runtime.runner import Runner
from shardbeat.runtime.transport import HttpTransport

JSON = {"content-type": "application/json"}
HUGE = 10**12


def sls_provider() -> SlsProvider:
    return SlsProvider("127.0.0.1:1", "p", "ls", "g", "c")


def cls_provider() -> ClsProvider:
    return ClsProvider("127.0.0.1:1", "ap-guangzhou", "logset", ["t1", "t2"], "g", "c")


def cls_answer(response: dict[str, Any], content_type: str = "application/json") -> HttpResponse:
    return HttpResponse(200, {"content-type": content_type}, json.dumps({"Response": response}).encode())


def printable_and_encodable(text: str | None) -> bool:
    if text is None:
        return True
    text.encode("utf-8")  # a lone surrogate raises here (and killed the record writer)
    return text.isprintable()


# -- group timeouts -----------------------------------------------------------------------------------


def test_huge_group_timeouts_are_clamped_for_the_lease_and_reported() -> None:
    sls_group = sls_provider().parse_describe_group(
        HttpResponse(200, JSON, json.dumps([{"name": "g", "timeout": HUGE, "order": False}]).encode())
    )
    assert sls_group is not None
    assert sls_group.timeout == server_values.MAX_GROUP_TIMEOUT and sls_group.reported_timeout == HUGE
    cls_group = cls_provider().parse_describe_group(
        cls_answer({"ConsumerGroupsInfo": [{"ConsumerGroup": "g", "Timeout": HUGE, "Topics": ["t1"]}]})
    )
    assert cls_group is not None
    assert cls_group.timeout == server_values.MAX_GROUP_TIMEOUT and cls_group.reported_timeout == HUGE
    plain = sls_provider().parse_describe_group(
        HttpResponse(200, JSON, b'[{"name": "g", "timeout": 60, "order": false}]')
    )
    assert plain is not None and plain.timeout == 60 and plain.reported_timeout is None


@pytest.mark.parametrize("timeout", [0, -5, 1.5, "60", True, None, [60], 1e400])
def test_group_timeouts_that_are_not_positive_integers_are_invalid_answers(timeout: Any) -> None:
    body = json.dumps([{"name": "g", "timeout": timeout, "order": False}]).encode()
    with pytest.raises(ProviderError) as sls_error:
        sls_provider().parse_describe_group(HttpResponse(200, JSON, body))
    assert sls_error.value.code == sls_wire.INVALID_RESPONSE
    with pytest.raises(ProviderError) as cls_error:
        cls_provider().parse_describe_group(
            cls_answer({"ConsumerGroupsInfo": [{"ConsumerGroup": "g", "Timeout": timeout, "Topics": []}]})
        )
    assert cls_error.value.code == cls_wire.INVALID_RESPONSE


# -- ids -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("partition", [2**64, 2**63, -1, 1.0, True, "1"])
def test_cls_partition_ids_are_bounded_like_sls_shard_ids(partition: Any) -> None:
    response = cls_answer({"TopicPartitionsInfo": [{"TopicID": "t1", "Partitions": [1, partition]}]})
    with pytest.raises(ProviderError) as error:
        cls_provider().parse_heartbeat(response)
    assert error.value.code == cls_wire.INVALID_RESPONSE


def test_largest_cls_partition_id_still_encodes_as_msgpack() -> None:
    top = cls_wire.MAX_PARTITION_ID
    got = cls_provider().parse_heartbeat(
        cls_answer({"TopicPartitionsInfo": [{"TopicID": "t1", "Partitions": [top]}]})
    )
    assert got == {"t1": frozenset({top})}
    msgpack.packb({"t1": sorted(got["t1"])})


# -- strings ---------------------------------------------------------------------------------------------

NASTY = "oops \udc80 \x1b[31mred\x1b[0m\r\nforged: line\u2028" + "x" * 5000


def test_cls_error_text_and_request_ids_are_printable_utf8_and_clipped() -> None:
    response = cls_answer({"Error": {"Code": "InternalError\udc80\n", "Message": NASTY}, "RequestId": NASTY})
    error = cls_wire.error_from_response(response)
    assert error is not None
    for text in (error.code, error.message, error.request_id):
        assert printable_and_encodable(text), repr(text)
    assert len(error.message) < 300 and error.request_id is not None and len(error.request_id) < 200
    # wrong types never reach a record
    typed = cls_wire.error_from_response(cls_answer({"Error": {"Code": "X", "Message": 5}, "RequestId": 7}))
    assert typed is not None and typed.request_id is None and typed.message == ""


def test_sls_error_text_and_request_ids_are_printable_utf8_and_clipped() -> None:
    body = json.dumps({"errorCode": "ServerBusy\udc80", "errorMessage": NASTY}).encode()
    error = sls_wire.error_from_response(HttpResponse(503, {**JSON, "x-log-requestid": NASTY}, body))
    for text in (error.code, error.message, error.request_id):
        assert printable_and_encodable(text), repr(text)
    assert error.request_id is not None and len(error.request_id) <= 131


def test_server_topic_names_are_printable_in_the_group_detail() -> None:
    group = cls_provider().parse_describe_group(
        cls_answer({"ConsumerGroupsInfo": [{"ConsumerGroup": "g", "Timeout": 6, "Topics": ["t1\n\udc80"]}]})
    )
    assert group is not None and printable_and_encodable(group.detail)


# -- Date ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "date",
    [
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Sat, 01 Jan 30546 00:00:00 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Mon, 01 Jan 1900 00:00:00 GMT",
        "garbage",
        "",
    ],
)
def test_implausible_dates_are_ignored(date: str) -> None:
    assert server_values.http_date(date) is None
    assert sls_wire.server_time(HttpResponse(200, {"date": date}, b"[]")) is None


def test_plausible_dates_parse() -> None:
    assert server_values.http_date("Sun, 06 May 2018 09:44:10 GMT") == 1525599850.0


# -- classification (compared with the official SDKs) ----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "retry", "credentials"),
    [
        ("SecurityToken.Expired", 400, Retry.SLOW, True),
        ("SecurityToken.Expired", 500, Retry.SLOW, True),
        ("InvalidAccessKeyId.NotFound", 400, Retry.SLOW, True),
        ("InvalidAccessKeyId.NotFound", 502, Retry.SLOW, True),
        ("SecurityToken.Invalid", 403, Retry.SLOW, True),
        ("InvalidAccessKeyId.Inactive", 500, Retry.SLOW, True),
        ("ShardWriteQuotaExceed", 403, Retry.FAST, False),
        ("ReadQuotaExceed", 403, Retry.FAST, False),
        ("WriteQuotaExceed", 403, Retry.FAST, False),
    ],
)
def test_sls_codes_classify_whatever_the_status(
    code: str, status: int, retry: Retry, credentials: bool
) -> None:
    body = json.dumps({"errorCode": code, "errorMessage": "m"}).encode()
    error = sls_wire.error_from_response(HttpResponse(status, JSON, body))
    assert (error.code, error.retry, error.credentials_rejected) == (code, retry, credentials)


@pytest.mark.parametrize(
    ("code", "retry"),
    [
        ("FailedOperation.Timeout", Retry.FAST),
        ("FailedOperation.ReadQpsLimit", Retry.FAST),
        ("FailedOperation", Retry.SLOW),
        ("FailedOperation.ConsumerGroupNotExist", Retry.SLOW),
    ],
)
def test_cls_transient_failed_operations(code: str, retry: Retry) -> None:
    assert cls_wire.retry_for_code(code) is retry


@pytest.mark.parametrize("content_type", ["text/plain", "text/html", "application/octet-stream", ""])
def test_cls_error_body_under_another_content_type_still_yields_its_code(content_type: str) -> None:
    response = cls_answer(
        {"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"}, "RequestId": "r"}, content_type
    )
    error = cls_wire.error_from_response(response)
    assert error is not None and (error.code, error.retry, error.request_id) == (
        "RequestLimitExceeded",
        Retry.FAST,
        "r",
    )
    # ...but a success envelope under a foreign type is never acted on
    with pytest.raises(ProviderError) as refused:
        cls_provider().parse_heartbeat(
            cls_answer({"TopicPartitionsInfo": [], "RequestId": "r"}, content_type)
        )
    assert refused.value.code == cls_wire.INVALID_RESPONSE


def header(request: HttpRequest, name: str) -> str | None:
    return next((v for k, v in request.headers if k.lower() == name.lower()), None)


def test_both_providers_send_a_user_agent() -> None:
    from shardbeat.providers.base import Credentials

    key = Credentials("id", "secret")
    for request in (
        cls_provider().heartbeat_request({}, 1551113065, key),
        cls_provider().describe_groups_request(1551113065, key),
        sls_provider().heartbeat_request({}, 1551113065, key),
    ):
        agent = header(request, "User-Agent")
        assert agent is not None and agent.startswith("shardbeat/"), request.headers


# -- the runner with a lying server ------------------------------------------------------------------


class Rewriting:
    """The real transport; every answer passes through `rewrite` first."""

    def __init__(self, rewrite: Any) -> None:
        self.inner = HttpTransport()
        self.rewrite = rewrite

    def send(self, endpoint: Endpoint, request: HttpRequest, deadline: float) -> HttpResponse:
        response: HttpResponse = self.rewrite(request, self.inner.send(endpoint, request, deadline))
        return response

    def close(self) -> None:
        self.inner.close()


def run_with(
    emulator: EmulatorServer, provider: str, rewrite: Any, until: Callable[[list[str]], bool]
) -> list[dict[str, Any]]:
    """Run until the events so far satisfy `until` (30 s at most). 1 s beats: a 0.9 s call budget
    that a loaded machine does not run past (0.3 s beats gave Timeout errors under load)."""
    group = {**emulator.demo_config(provider), "consumer": "lied-to", "heartbeat_interval": 1.0, "timeout": 6}
    config = config_from_dict({"groups": [group]}).config
    read_fd, write_fd = os.pipe()
    got: list[dict[str, Any]] = []

    def read() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            got.extend(json.loads(line) for line in pipe)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    runner = Runner(config.groups, RecordWriter(write_fd), transport=Rewriting(rewrite))
    main = threading.Thread(target=runner.run, daemon=True)
    main.start()
    wait_for(lambda: until([r["event"] for r in list(got)]), 30, step=0.05)
    runner.stop()
    main.join(5)
    os.close(write_fd)
    reader.join(5)
    return got


def describe(request: HttpRequest) -> bool:
    return request.method == "GET" or header(request, "X-TC-Action") == "DescribeConsumerGroups"


def huge_timeout(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    if not describe(request):
        return response
    doc = json.loads(response.body)
    for group in doc if isinstance(doc, list) else doc["Response"]["ConsumerGroupsInfo"]:
        group["timeout" if isinstance(doc, list) else "Timeout"] = HUGE
    return HttpResponse(response.status, response.headers, json.dumps(doc).encode())


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_a_group_timeout_of_10_to_the_12_still_gives_assignments_and_leases(
    emulator: EmulatorServer, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    """(Failed before: `year 30546 is out of range` on every heartbeat, the claims went on and no
    `assignment` record was ever written.)"""
    got = run_with(emulator, provider, huge_timeout, lambda events: "lease" in events)
    events = [r["event"] for r in got]
    assert "assignment" in events and "lease" in events, events
    assert "error" not in events, got
    assignment = next(r for r in got if r["event"] == "assignment")
    assert assignment["lease_expires"] < "2026-12-31"  # leased by at most a day
    assert "internal error" not in caplog.text
    assert "leasing by at most 86400s" in caplog.text


def far_future_date(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    return HttpResponse(
        response.status, {**response.headers, "date": "Fri, 31 Dec 9999 23:59:59 GMT"}, response.body
    )


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_a_date_in_the_year_9999_is_not_applied_to_signatures(
    emulator: EmulatorServer, provider: str
) -> None:
    """(Failed before: the offset of ~8000 years was applied, every request then failed its
    signature-time check and the node never held a lease again.)"""
    got = run_with(emulator, provider, far_future_date, lambda events: events.count("lease") >= 2)
    events = [r["event"] for r in got]
    assert events.count("lease") >= 2 and "error" not in events, got


def test_a_redirect_says_where_it_points_and_is_not_followed() -> None:
    moved = HttpResponse(
        302, {"location": "https://portal.example/\x1blogin", "content-type": "text/html"}, b"<html/>"
    )
    for error in (sls_wire.error_from_response(moved), cls_wire.error_from_response(moved)):
        assert error is not None and error.status == 302
        assert "redirect to 'https://portal.example/ login'" in error.message, error.message
        assert "not followed" in error.message and printable_and_encodable(error.message)
