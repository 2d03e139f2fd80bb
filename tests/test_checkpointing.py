"""Reading start positions and sending commits as sans-I/O calls (core/calls.py fetch_positions and
send_commit), answered step by step on a fake clock: pacing, the deadline, the server's clock (signing
time and every answer shown to it), and each value's outcome."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any, TypeVar

from shardbeat.core.calls import Answer, Pause, Send, Step, fetch_positions, outcome_of, send_commit
from shardbeat.core.checkpoints import OK, REFUSED, RETRY, Position, ShardKey
from shardbeat.core.records import Instant
from shardbeat.core.schedule import Retry
from shardbeat.core.wire import Credentials, HttpRequest, HttpResponse, ProviderError, Wire
from shardbeat.providers.cls import ClsProvider
from shardbeat.providers.sls import SlsProvider
from shardbeat.runtime.transport import TransportError

CREDS = Credentials("id", "key")
WALL = 1_800_000_000.0
R = TypeVar("R")


class Ctx:
    """The call's view of its group: the wire, the server clock offset, and the answers it was shown."""

    def __init__(self, wire: Wire, offset: float = 0.0) -> None:
        self.wire = wire
        self.offset = offset
        self.observed: list[tuple[int | None, float]] = []  # (status, sent wall)

    def server_now(self, wall: float) -> float:
        return wall + self.offset

    def observe(self, answer: Answer, sent_wall: float) -> None:
        self.observed.append((answer.response.status if answer.response else None, sent_wall))


class Script:
    """Plays the shell: answers each Send with the next reply 10 ms later (a (status, doc) pair or a
    ProviderError), resumes each Pause at its time."""

    def __init__(self, replies: list[Any], mono: float = 100.0) -> None:
        self.replies = replies
        self.mono = mono
        self.sent: list[HttpRequest] = []
        self.pauses: list[float] = []

    def now(self) -> Instant:
        return Instant(WALL + self.mono, self.mono)

    def run(self, call: Generator[Step, Answer, R]) -> R:
        answer: Answer | None = None
        for _ in range(100):
            try:
                step = call.send(answer) if answer is not None else next(call)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Pause):
                self.pauses.append(round(step.until - self.mono, 3))
                self.mono = max(self.mono, step.until)
                answer = Answer(self.now())
                continue
            assert isinstance(step, Send)
            self.sent.append(step.request)
            self.mono += 0.01
            reply = self.replies.pop(0)
            if isinstance(reply, ProviderError):
                answer = Answer(self.now(), failure=reply)
                continue
            status, doc = reply
            body = json.dumps(doc).encode()
            response = HttpResponse(status, {"content-type": "application/json"}, body)
            answer = Answer(self.now(), response)
        raise AssertionError("the call never ended")


def offsets(topic: str, partition: int, offset: int) -> tuple[int, dict[str, Any]]:
    info = {"TopicID": topic, "PartitionOffsets": [{"PartitionId": partition, "Offset": offset}]}
    return 200, {"Response": {"TopicPartitionOffsetsInfo": [info], "RequestId": "r"}}


def cls() -> ClsProvider:
    return ClsProvider("http://127.0.0.1:1", "ap-guangzhou", "ls", ["ta"], "demo-group", "c")


def sls() -> SlsProvider:
    return SlsProvider("http://127.0.0.1:1", "proj", "store", "demo-group", "c")


def test_cls_reads_are_paced_and_fall_back_to_the_configured_start() -> None:
    script = Script([offsets("ta", 1, 42), offsets("ta", 2, -1), offsets("ta", 2, 7)])
    ctx = Ctx(cls(), offset=120.0)
    positions, failure, ended = script.run(
        fetch_positions(ctx, CREDS, {"ta": frozenset({1, 2})}, "begin", script.now(), 105.0)
    )
    assert failure is None
    assert positions == {("ta", 1): Position(42, "committed"), ("ta", 2): Position(7, "begin")}
    assert script.pauses == [0.05, 0.05]  # between the three calls, none before the first
    assert [json.loads(r.body)["OffsetType"] for r in script.sent] == [0, 0, 1]
    assert [s for s, _ in ctx.observed] == [200, 200, 200]  # every answer's Date is shown to the clock
    stamps = [int(dict(r.headers)["X-TC-Timestamp"]) for r in script.sent]
    assert stamps[0] == int(WALL + 100.0 + 120.0)  # signed with the server's time
    assert ended.mono == script.mono


def test_reads_stop_at_the_deadline_and_report_what_is_missing() -> None:
    script = Script([offsets("ta", 1, 42), offsets("ta", 2, 5)])
    positions, failure, _ = script.run(
        fetch_positions(Ctx(cls()), CREDS, {"ta": frozenset({1, 2, 3})}, "end", script.now(), 100.05)
    )
    assert positions == {("ta", 1): Position(42, "committed")}
    assert failure is not None and failure.code == "Timeout" and failure.retry is Retry.FAST
    assert len(script.sent) == 1


def test_a_failed_read_is_reported_and_the_other_shards_are_still_read() -> None:
    refused = ProviderError("InternalError", "try again", retry=Retry.FAST)
    script = Script([refused, offsets("ta", 2, 9)])
    positions, failure, _ = script.run(
        fetch_positions(Ctx(cls()), CREDS, {"ta": frozenset({1, 2})}, "begin", script.now(), 110.0)
    )
    assert positions == {("ta", 2): Position(9, "committed")}
    assert failure is refused


def test_sls_reads_committed_checkpoints_in_one_call_then_cursors() -> None:
    listed = [{"shard": 0, "checkpoint": "", "updateTime": 0, "consumer": ""}]
    listed.append({"shard": 1, "checkpoint": "MTA=", "updateTime": 1, "consumer": "c"})
    script = Script([(200, listed), (200, {"cursor": "QkVH"})])
    positions, failure, _ = script.run(
        fetch_positions(Ctx(sls()), CREDS, {"store": frozenset({0, 1})}, 1_700_000_000, script.now(), 110.0)
    )
    assert failure is None
    assert positions == {("store", 0): Position("QkVH", "time"), ("store", 1): Position("MTA=", "committed")}
    assert script.pauses == []  # SLS does not throttle these reads
    assert "from=1700000000" in script.sent[1].target


def test_sls_commit_outcomes_per_shard() -> None:
    refusal = (400, {"errorCode": "ConsumerNotMatch", "errorMessage": "no"})
    timeout = ProviderError("Timeout", "slow", retry=Retry.FAST)
    script = Script([(200, {}), refusal, timeout])
    values: dict[ShardKey, str | int] = {
        ("store", 0): "MA==",
        ("store", 1): "MQ==",
        ("store", 2): "Mg==",
        ("store", 3): "Mw==",
    }
    outcomes, failures, _ = script.run(
        send_commit(Ctx(sls()), CREDS, values, lambda key, at: key != ("store", 3), script.now(), 110.0)
    )
    assert outcomes == {("store", 0): OK, ("store", 1): REFUSED, ("store", 2): RETRY, ("store", 3): RETRY}
    assert [(batch, f.code) for batch, f in failures] == [
        ({("store", 1): "MQ=="}, "ConsumerNotMatch"),
        ({("store", 2): "Mg=="}, "Timeout"),
    ]
    assert len(script.sent) == 3  # shard 3 was no longer held: never sent
    assert all("forceSuccess=false" in r.target for r in script.sent)


def test_held_is_asked_at_the_time_of_each_request() -> None:
    asked: list[float] = []

    def held(key: ShardKey, at: Instant) -> bool:
        asked.append(at.mono)
        return True

    script = Script([(200, {}), (200, {})])
    script.run(
        send_commit(Ctx(sls()), CREDS, {("store", 0): "MA==", ("store", 1): "MQ=="}, held, script.now(), 110)
    )
    assert asked == [100.0, 100.01]  # each right before its own request, not once up front


def test_a_value_the_wire_cannot_carry_is_refused_without_a_request() -> None:
    script = Script([])
    outcomes, failures, _ = script.run(
        send_commit(Ctx(sls()), CREDS, {("store", 0): 12}, lambda key, at: True, script.now(), 110.0)
    )
    assert outcomes == {("store", 0): REFUSED}
    assert failures[0][1].code == "InvalidCheckpoint" and script.sent == []


def test_cls_commits_in_one_request_with_the_deadline_given() -> None:
    deadlines: list[float] = []
    call = send_commit(
        Ctx(cls()), CREDS, {("ta", 1): 5, ("ta", 2): 6}, lambda k, a: True, Instant(WALL, 100), 101
    )
    step = next(call)
    assert isinstance(step, Send)
    deadlines.append(step.deadline)
    assert deadlines == [101]
    assert json.loads(step.request.body)["TopicPartitionOffsetsInfo"] == [
        {
            "TopicID": "ta",
            "PartitionOffsets": [{"PartitionId": 1, "Offset": 5}, {"PartitionId": 2, "Offset": 6}],
        }
    ]


def test_passing_faults_are_retried_and_what_the_server_means_is_not() -> None:
    def failure(retry: Retry) -> ProviderError:
        return ProviderError("X", "y", retry=retry)

    assert outcome_of(failure(Retry.FAST)) == RETRY
    assert outcome_of(failure(Retry.RESIGN)) == RETRY
    assert outcome_of(failure(Retry.SLOW)) == REFUSED
    assert outcome_of(failure(Retry.REJOIN)) == REFUSED


def test_a_call_that_got_no_answer_names_the_endpoint_and_step() -> None:
    # The shell turns a TransportError into the call's failure with this text (runtime/runner.py).
    error = TransportError("Timeout", "no answer before the call's deadline", "answer")
    message = error.describe(sls().endpoint, 0.9)
    assert message.startswith("answer from 127.0.0.1:1: no answer before the call's deadline (0.9s); ")
    assert "did not answer within the call's deadline" in message  # the fix net_errors gives
