"""Reading start positions and sending commits, with a scripted transport and an injected clock:
pacing, the deadline, clock observation, and each value's outcome."""

from __future__ import annotations

import json
from typing import Any

from shardbeat.config.model import CheckpointConfig
from shardbeat.core.checkpoints import OK, REFUSED, RETRY, Position
from shardbeat.providers.base import Credentials, Endpoint, HttpRequest, HttpResponse
from shardbeat.providers.cls import ClsProvider
from shardbeat.providers.sls import SlsProvider
from shardbeat.runtime.checkpointing import Caller, fetch_positions, send_commit
from shardbeat.runtime.transport import TransportError

CREDS = Credentials("id", "key")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.pauses.append(round(seconds, 3))
        self.now += seconds


class Script:
    """Answers each request with the next scripted reply (a doc, or an exception), 10 ms each."""

    def __init__(self, clock: Clock, replies: list[Any]) -> None:
        self.clock = clock
        self.replies = replies
        self.sent: list[HttpRequest] = []

    def send(self, endpoint: Endpoint, request: HttpRequest, deadline: float) -> HttpResponse:
        self.sent.append(request)
        self.clock.now += 0.01
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        status, doc = reply
        return HttpResponse(
            status, {"content-type": "application/json", "date": "x"}, json.dumps(doc).encode()
        )

    def close(self) -> None:
        pass


def offsets(topic: str, partition: int, offset: int) -> tuple[int, dict[str, Any]]:
    info = {"TopicID": topic, "PartitionOffsets": [{"PartitionId": partition, "Offset": offset}]}
    return 200, {"Response": {"TopicPartitionOffsetsInfo": [info], "RequestId": "r"}}


def caller(provider: Any, script: Script, clock: Clock, deadline: float, seen: list[Any]) -> Caller:
    return Caller(
        provider, script, lambda: 1.7e9, lambda: 1.7e9, lambda r, w: seen.append(r.status), deadline
    )


def test_cls_reads_are_paced_and_fall_back_to_the_configured_start() -> None:
    clock = Clock()
    provider = ClsProvider("http://127.0.0.1:1", "ap-guangzhou", "ls", ["ta"], "g", "c")
    script = Script(clock, [offsets("ta", 1, 42), offsets("ta", 2, -1), offsets("ta", 2, 7)])
    seen: list[Any] = []
    positions, failure = fetch_positions(
        caller(provider, script, clock, 105.0, seen), CREDS, clock.monotonic,
        {"ta": frozenset({1, 2})}, CheckpointConfig(start="begin"), clock.pause,
    )  # fmt: skip
    assert failure is None
    assert positions == {("ta", 1): Position(42, "committed"), ("ta", 2): Position(7, "begin")}
    assert clock.pauses == [0.05, 0.05]  # between the three calls, none before the first
    assert [json.loads(r.body)["OffsetType"] for r in script.sent] == [0, 0, 1]
    assert seen == [200, 200, 200]  # every answer's Date is shown to the clock


def test_reads_stop_at_the_deadline_and_report_what_is_missing() -> None:
    clock = Clock()
    provider = ClsProvider("http://127.0.0.1:1", "ap-guangzhou", "ls", ["ta"], "g", "c")
    script = Script(clock, [offsets("ta", 1, 42), offsets("ta", 2, 5)])
    positions, failure = fetch_positions(
        caller(provider, script, clock, 100.05, []), CREDS, clock.monotonic,
        {"ta": frozenset({1, 2, 3})}, CheckpointConfig(), clock.pause,
    )  # fmt: skip
    assert positions == {("ta", 1): Position(42, "committed")}
    assert failure is not None and failure.code == "Timeout"
    assert len(script.sent) == 1


def test_sls_commit_outcomes_per_shard() -> None:
    clock = Clock()
    provider = SlsProvider("http://127.0.0.1:1", "proj", "store", "g", "c")
    refusal = (400, {"errorCode": "ConsumerNotMatch", "errorMessage": "no"})
    script = Script(clock, [(200, {}), refusal, TransportError("Timeout", "slow")])
    values = {("store", 0): "MA==", ("store", 1): "MQ==", ("store", 2): "Mg==", ("store", 3): "Mw=="}
    outcomes, failures = send_commit(
        caller(provider, script, clock, 110.0, []), CREDS, values, lambda key: key != ("store", 3)
    )
    assert outcomes == {("store", 0): OK, ("store", 1): REFUSED, ("store", 2): RETRY, ("store", 3): RETRY}
    assert [(batch, f.code) for batch, f in failures] == [
        ({("store", 1): "MQ=="}, "ConsumerNotMatch"),
        ({("store", 2): "Mg=="}, "Timeout"),
    ]
    assert len(script.sent) == 3  # shard 3 was no longer held: never sent
    assert all("forceSuccess=false" in r.target for r in script.sent)


def test_a_commit_that_got_no_answer_names_the_endpoint_and_step_as_a_heartbeat_does() -> None:
    clock = Clock()
    provider = SlsProvider("http://127.0.0.1:1", "proj", "store", "g", "c")
    script = Script(clock, [TransportError("Timeout", "no answer before the call's deadline", "answer")])
    _, failures = send_commit(
        caller(provider, script, clock, 110.0, []), CREDS, {("store", 0): "MA=="}, lambda key: True
    )
    ((_, failure),) = failures
    assert failure.code == "Timeout"
    assert (
        failure.message.startswith("answer from proj.127.0.0.1:1: no answer")
        or "answer from " in failure.message
    )
    assert "did not answer within the call's deadline" in failure.message  # the fix net_errors gives
