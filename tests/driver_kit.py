"""Step a GroupDriver (core/driver.py) by hand: a fake clock, the real providers, a fake wire.

The kit plays the shell (runtime/runner.py) without threads, sockets or sleeps: `poll` calls
`driver.poll` at a chosen instant, starts every call the driver hands over and keeps each one at its
current step (`Send` or `Pause`); the test answers a step with a canned HTTP answer shaped like the
real service's (`SlsServer`, `ClsServer`, after /work/shared/reference/*.md and the providers' own
parsers) or with a failure, exactly as the shell would. Every record the driver hands over is checked
against schemas/record.schema.json.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema

from shardbeat.config import GroupConfig, config_from_dict
from shardbeat.core.calls import Answer, Call, Pause, Send, Step
from shardbeat.core.driver import GroupDriver
from shardbeat.core.group_settings import Emit
from shardbeat.core.records import Instant, Record
from shardbeat.core.schedule import Retry
from shardbeat.core.shards import ShardMap, shard_map
from shardbeat.core.wire import Credentials, HttpRequest, HttpResponse, ProviderError
from shardbeat.providers.services import make_provider

ROOT = Path(__file__).parent.parent
SCHEMA = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "record.schema.json").read_text()))

MONO0 = 1000.0
WALL0 = 1_800_000_000.0  # 2027-01-15, the wall time at MONO0
LOGSTORE = "demo-logstore"
TOPIC_A, TOPIC_B = "topic-a", "topic-b"
KEYS = Credentials("akid", "secret-value")
GROUP = "demo-group"


def group(provider: str = "sls", **over: Any) -> GroupConfig:
    """One group's config as the config loader builds it (config_from_dict)."""
    doc: dict[str, Any] = {
        "provider": provider,
        "endpoint": "http://127.0.0.1:1",
        "consumer_group": GROUP,
        "consumer": "c1",
        "heartbeat_interval": 1,
        "timeout": 10,
    }
    if provider == "sls":
        doc |= {"project": "proj", "logstore": LOGSTORE}
        doc["credentials"] = {"access_key_id": KEYS.key_id, "access_key_secret": KEYS.secret}
    else:
        doc |= {"region": "ap-guangzhou", "logset_id": "ls-1", "topics": [TOPIC_A, TOPIC_B]}
        doc["credentials"] = {"secret_id": KEYS.key_id, "secret_key": KEYS.secret}
    doc.update(over)
    return config_from_dict({"groups": [doc]}).config.groups[0]


class FakeClock:
    """Both clocks, moved by hand; wall time runs with the monotonic one."""

    def __init__(self) -> None:
        self.mono = MONO0

    def now(self) -> Instant:
        return Instant(WALL0 + (self.mono - MONO0), self.mono)

    def to(self, mono: float) -> Instant:
        assert mono >= self.mono, f"time runs forward only ({mono} < {self.mono})"
        self.mono = mono
        return self.now()

    def advance(self, seconds: float) -> Instant:
        return self.to(self.mono + seconds)


class Keys:
    """A credential source: `missing` until a first key arrives; counts refreshes."""

    def __init__(self, missing: bool = False) -> None:
        self.missing = missing
        self.refreshes = 0
        self.key = KEYS

    def current(self, deadline: float | None = None) -> Credentials:
        if self.missing:
            raise ProviderError("CredentialsUnavailable", "no key yet", retry=Retry.FAST)
        return self.key

    def refresh(self) -> None:
        self.refreshes += 1


def action(request: HttpRequest) -> str:
    """The API action a request calls (SLS from its method and path, CLS from X-TC-Action)."""
    headers = dict(request.headers)
    if "X-TC-Action" in headers:
        return headers["X-TC-Action"]
    parts = urlsplit(request.target)
    query = parse_qs(parts.query)
    kind = query.get("type", [""])[0]
    if kind == "heartbeat":
        return "HeartBeat"
    if kind == "checkpoint":
        return "UpdateCheckPoint"
    if kind == "cursor":
        return "GetCursor"
    if parts.path.endswith("/consumergroups"):
        return "ListConsumerGroup" if request.method == "GET" else "CreateConsumerGroup"
    return "UpdateConsumerGroup" if request.method == "PUT" else "GetCheckPoint"


def claim_of(request: HttpRequest) -> dict[str, list[int]]:
    """The shards a heartbeat lists ({} when none), in either provider's body."""
    body = json.loads(request.body)
    if isinstance(body, list):
        return {LOGSTORE: body} if body else {}
    return {t["TopicID"]: t["Partitions"] for t in body["TopicPartitionsInfo"] if t["Partitions"]}


@dataclass
class Pending:
    """A call the driver handed over, stopped at `step`."""

    call: Call
    step: Step

    @property
    def send(self) -> Send:
        assert isinstance(self.step, Send), f"expected a Send, got {self.step!r}"
        return self.step

    @property
    def action(self) -> str:
        return action(self.send.request) if isinstance(self.step, Send) else "Pause"

    @property
    def body(self) -> Any:
        return json.loads(self.send.request.body)


def _json(status: int, doc: object, headers: Mapping[str, str]) -> HttpResponse:
    body = b"" if doc is None else json.dumps(doc).encode()
    return HttpResponse(status, {"content-type": "application/json", **headers}, body)


class SlsServer:
    """SLS answers as the service gives them (sls.md): bare JSON, errors {errorCode, errorMessage}."""

    name = "sls"
    topic = LOGSTORE
    missing_group = ("ConsumerGroupNotExist", 404)

    def ok(self, doc: object = None) -> HttpResponse:
        return _json(200, doc, {"x-log-requestid": "req-ok"})

    def error(self, status: int, code: str, message: str = "refused") -> HttpResponse:
        return _json(status, {"errorCode": code, "errorMessage": message}, {"x-log-requestid": "req-err"})

    def groups(self, timeout: int | None, name: str = GROUP) -> HttpResponse:
        listed = [{"name": "other", "timeout": 60, "order": False}]
        if timeout is not None:
            listed.append({"name": name, "timeout": timeout, "order": False})
        return self.ok(listed)

    def already_exists(self) -> HttpResponse:
        return self.error(400, "ConsumerGroupAlreadyExist", "consumer group demo-group already exist")

    def assigned(self, ids: Mapping[str, list[int]]) -> HttpResponse:
        return self.ok(sorted(ids.get(LOGSTORE, [])))

    def refused_read(self) -> HttpResponse:
        return self.error(403, "Forbidden", "denied by sts or ram, action: log:ListConsumerGroup")

    def bad_key(self) -> HttpResponse:
        return self.error(401, "SignatureNotMatch", "signature is not matched")

    def transient(self) -> HttpResponse:
        return self.error(500, "InternalServerError", "try again")

    def checkpoints(self, values: Mapping[int, str]) -> HttpResponse:
        return self.ok(
            [{"shard": s, "checkpoint": v, "updateTime": 0, "consumer": "x"} for s, v in values.items()]
        )

    def cursor(self, value: str) -> HttpResponse:
        return self.ok({"cursor": value})

    def not_owner(self) -> HttpResponse:
        return self.error(400, "ConsumerNotMatch", "consumer c1 does not own shard")


class ClsServer:
    """CLS API 3.0 answers (cls.md): always HTTP 200, {"Response": {..., "RequestId"}} or Response.Error."""

    name = "cls"
    topic = TOPIC_A
    missing_group = None  # CLS lists the logset's groups: a missing one is simply not listed

    def ok(self, fields: Mapping[str, object] | None = None) -> HttpResponse:
        return _json(200, {"Response": {**(fields or {}), "RequestId": "req-ok"}}, {})

    def error(self, code: str, message: str = "refused") -> HttpResponse:
        doc = {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "req-err"}}
        return _json(200, doc, {})

    def groups(self, timeout: int | None, name: str = GROUP) -> HttpResponse:
        listed: list[dict[str, object]] = [{"ConsumerGroup": "other", "Timeout": 60, "Topics": [TOPIC_A]}]
        if timeout is not None:
            listed.append({"ConsumerGroup": name, "Timeout": timeout, "Topics": [TOPIC_A, TOPIC_B]})
        return self.ok({"ConsumerGroupsInfo": listed})

    def already_exists(self) -> HttpResponse:
        return self.error("FailedOperation", "consumer group already exists")

    def assigned(self, ids: Mapping[str, list[int]]) -> HttpResponse:
        infos = [{"TopicID": t, "Partitions": sorted(p)} for t, p in ids.items()]
        return self.ok({"TopicPartitionsInfo": infos})

    def refused_read(self) -> HttpResponse:
        return self.error("UnauthorizedOperation", "no permission for DescribeConsumerGroups")

    def bad_key(self) -> HttpResponse:
        return self.error("AuthFailure.SignatureFailure", "signature mismatch")

    def transient(self) -> HttpResponse:
        return self.error("InternalError", "try again")

    def offset(self, topic: str, partition: int, offset: int) -> HttpResponse:
        info = {"TopicID": topic, "PartitionOffsets": [{"PartitionId": partition, "Offset": offset}]}
        return self.ok({"TopicPartitionOffsetsInfo": [info]})


Server = SlsServer | ClsServer


def server_for(provider: str) -> Server:
    return SlsServer() if provider == "sls" else ClsServer()


class Kit:
    """One driver and the shell's side of it, on a fake clock."""

    def __init__(
        self, config: GroupConfig, keys: Keys | None = None, clock: FakeClock | None = None, index: int = 0
    ) -> None:
        self.config = config
        self.clock = clock or FakeClock()
        self.keys = keys or Keys()
        self.server = server_for(config.provider)
        now = self.clock.mono
        self.driver = GroupDriver(
            index, config, make_provider(config), self.keys, now, now, random.Random(7), "scope"
        )
        self.emits: list[Emit] = []
        self.pending: list[Pending] = []
        self._seen = 0
        self.internal_errors = 0

    # -- the shell's side ---------------------------------------------------------------------------

    @property
    def records(self) -> list[Record]:
        return [e.record for e in self.emits]

    def new_records(self) -> list[Record]:
        """Records handed over since the last call of this."""
        fresh = self.records[self._seen :]
        self._seen = len(self.emits)
        return fresh

    def events(self) -> list[str]:
        return [r["event"] for r in self.new_records()]

    def poll(self, at: float | None = None) -> None:
        """Let the driver act at `at` (default: now), as the shell does when a due time comes."""
        if at is not None:
            self.clock.to(at)
        self.driver.poll(self.clock.now())
        self.collect()

    def poll_due(self) -> None:
        """Move the clock to the driver's next due time and poll there."""
        due = self.driver.next_due()
        assert due != float("inf"), "nothing is due"
        self.poll(max(due, self.clock.mono))

    def collect(self) -> None:
        """Take the driver's records and start the calls it made (each to its first step)."""
        while True:
            out, calls = self.driver.take()
            for emit in out:
                SCHEMA.validate(emit.record)
            self.emits.extend(out)
            if not calls:
                return
            for call in calls:
                self._advance(call, None)

    def _advance(self, call: Call, answer: Answer | None) -> None:
        try:
            step = call.send(answer) if answer is not None else next(call)
        except StopIteration:
            return
        except Exception:  # the shell logs an internal error and lets the driver recover
            self.internal_errors += 1
            self.driver.recover(call, self.clock.now())
            return
        self.pending.append(Pending(call, step))

    def only(self) -> Pending:
        assert len(self.pending) == 1, f"expected one call out, got {[p.action for p in self.pending]}"
        return self.pending[0]

    def answer(
        self,
        response: HttpResponse | None = None,
        *,
        failure: ProviderError | None = None,
        after: float = 0.01,
        server_date: float | None = None,
        call: Pending | None = None,
    ) -> None:
        """Answer a call's Send `after` seconds from now (the only call out, unless named)."""
        pending = call or self.only()
        assert isinstance(pending.step, Send)
        self.pending.remove(pending)
        self.clock.advance(after)
        at = self.clock.now()
        self._advance(pending.call, Answer(at, response, failure, server_date))
        self.collect()

    def resume(self, call: Pending | None = None) -> None:
        """Resume a paused call at its `until`."""
        pending = call or self.only()
        assert isinstance(pending.step, Pause)
        self.pending.remove(pending)
        self.clock.to(max(self.clock.mono, pending.step.until))
        self._advance(pending.call, Answer(self.clock.now()))
        self.collect()

    def release_written(self) -> None:
        """The shell writes each record; once one with `release` is written, it releases those shards."""
        for emit in self.emits:
            if emit.release is not None:
                self.driver.release(emit.release, self.clock.now())
        self.collect()

    # -- common sequences ---------------------------------------------------------------------------

    def bootstrap(self, server_timeout: int | None = None) -> None:
        """The first poll and the group read, answered with the group as configured (or with
        `server_timeout`): afterwards the first heartbeat is due."""
        self.poll()
        timeout = server_timeout if server_timeout is not None else int(self.config.timeout)
        assert self.only().action in ("ListConsumerGroup", "DescribeConsumerGroups")
        self.answer(self.server.groups(timeout))
        assert self.driver.bootstrapped

    def beat(self, assigned: Mapping[str, list[int]], after: float = 0.01) -> dict[str, list[int]]:
        """Poll at the next due time, answer the heartbeat it sends with `assigned`; returns the claim
        the heartbeat listed."""
        self.poll_due()
        pending = self.only()
        assert pending.action in ("HeartBeat", "SendConsumerHeartbeat"), pending.action
        claim = claim_of(pending.send.request)
        self.answer(self.server.assigned(assigned), after=after)
        return claim

    def join(self, assigned: Mapping[str, list[int]] | None = None) -> Record:
        """Bootstrap and a first heartbeat: returns the `assignment` record."""
        self.bootstrap()
        self.beat(assigned if assigned is not None else {self.server.topic: [0, 1, 2]})
        (record,) = [r for r in self.new_records() if r["event"] == "assignment"]
        return record


def shards(ids: Mapping[str, list[int]]) -> ShardMap:
    return shard_map({t: frozenset(v) for t, v in ids.items()})


def rfc(mono: float) -> str:
    """The record text of a monotonic instant on the fake clock."""
    from shardbeat.core.records import rfc3339

    return rfc3339(WALL0 + (mono - MONO0))
