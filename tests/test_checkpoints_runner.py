"""Checkpoints end to end in-process: the Runner against the emulator (SLS and CLS).

Start positions (committed / begin / end / time), coalescing within commit_interval, NotOwner,
a revoke with `release: ack` carrying final checkpoints that the next owner starts from, a server
refusal, bounded retries under faults, and the flush of a clean stop before `stopped`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shardbeat.emulator.fixtures import parse_fixtures
from shardbeat.emulator.server import EmulatorServer
from shardbeat.emulator.world import StoredCheckpoint
from test_runner import InProcess, fixtures, is_event, sls

Record = dict[str, Any]


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(parse_fixtures(fixtures(shards=4))).start()
    server.world.log_origin -= 100  # 100 s of data in every shard
    yield server
    server.stop()


def cls(emulator: EmulatorServer, **over: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "provider": "cls",
        "endpoint": emulator.url,
        "region": "ap-guangzhou",
        "logset_id": "demo-logset",
        "topics": ["demo-topic-a", "demo-topic-b"],
        "consumer_group": "demo-group",
        "consumer": "c1",
        "credentials": {"secret_id": "emulator-secret-id", "secret_key": "emulator-secret-key"},
        "heartbeat_interval": 0.3,
        "timeout": 3,
    }
    group.update(over)
    return group


def cursor(position: int) -> str:
    return base64.b64encode(str(position).encode()).decode()


def position(value: str) -> int:
    return int(base64.b64decode(value))


def commits(emulator: EmulatorServer) -> list[dict[str, Any]]:
    actions = ("UpdateCheckPoint", "CommitConsumerOffsets")
    return [r.to_json() for r in emulator.world.receipts()[0] if r.call.action in actions]


def stored(emulator: EmulatorServer, shard: int) -> str | int | None:
    group = emulator.world.projects["demo-project"]["demo-logstore"].groups["demo-group"]
    entry = group.checkpoints.get(shard)
    return entry.value if entry else None


@pytest.mark.parametrize(
    ("start", "source"), [("begin", "begin"), ("end", "end"), (40, "time")], ids=["begin", "end", "time"]
)
def test_sls_start_from_committed_else_the_configured_position(
    emulator: EmulatorServer, start: str | int, source: str
) -> None:
    group = emulator.world.projects["demo-project"]["demo-logstore"].groups["demo-group"]
    group.checkpoints[2] = StoredCheckpoint(cursor(77), 1, "someone")
    when = int(emulator.world.log_origin) + start if isinstance(start, int) else start
    p = InProcess([sls(emulator, checkpoints={"start": when})])
    try:
        rec = p.wait_for(is_event("assignment"))
        start_field = rec["start"]["demo-logstore"]
        assert sorted(start_field) == ["0", "1", "2", "3"]
        assert start_field["2"] == {"checkpoint": cursor(77), "from": "committed"}
        for shard in ("0", "1", "3"):
            assert start_field[shard]["from"] == source
            at = position(start_field[shard]["checkpoint"])
            assert {"begin": at == 0, "end": at >= 100, "time": at == 40}[source], (source, at)
    finally:
        p.stop()


def test_cls_start_positions_are_offsets(emulator: EmulatorServer) -> None:
    group = emulator.world.logsets["demo-logset"].groups["demo-group"]
    group.checkpoints[("demo-topic-b", 2)] = StoredCheckpoint(55, 1, "someone")
    # 7 paced reads (4 committed, 3 positions) fit the start budget of half an interval
    p = InProcess([cls(emulator, heartbeat_interval=1.0, checkpoints={"start": "begin"})])
    try:
        rec = p.wait_for(is_event("assignment"))
        assert rec["start"] == {
            "demo-topic-a": {
                "1": {"checkpoint": 0, "from": "begin"},
                "2": {"checkpoint": 0, "from": "begin"},
            },
            "demo-topic-b": {
                "1": {"checkpoint": 0, "from": "begin"},
                "2": {"checkpoint": 55, "from": "committed"},
            },
        }
    finally:
        p.stop()


def test_no_start_field_without_checkpoints(emulator: EmulatorServer) -> None:
    p = InProcess([sls(emulator)])
    try:
        assert "start" not in p.wait_for(is_event("assignment"))
    finally:
        p.stop()


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_commits_are_coalesced_and_sent_within_the_interval(emulator: EmulatorServer, provider: str) -> None:
    make = sls if provider == "sls" else cls
    topic, shard, values = (
        ("demo-logstore", 1, [cursor(5), cursor(6), cursor(7)])
        if provider == "sls"
        else ("demo-topic-a", 1, [5, 6, 7])
    )
    p = InProcess([make(emulator, checkpoints={"commit_interval": 0.6})])
    try:
        p.wait_for(is_event("assignment"))
        target = p.runner.sessions
        sent = time.monotonic()
        for value in values:
            p.runner.commit(target, {(topic, shard): value})
        rec = p.wait_for(is_event("committed"), timeout=5)
        took = time.monotonic() - sent
        assert rec["checkpoints"] == {topic: {str(shard): values[-1]}}
        assert 0.5 <= took < 3, took
        time.sleep(0.8)
        log = commits(emulator)
        assert len(log) == 1 and log[0]["checkpoints"] == {topic: {str(shard): values[-1]}}
        assert log[0]["error"] is None and log[0]["consumer"] == "c1"
        assert [r for r in p.records if r["event"] == "committed"] == [rec]
    finally:
        p.stop()


def test_not_owner_gets_an_error_and_nothing_is_sent(emulator: EmulatorServer) -> None:
    p = InProcess([sls(emulator, checkpoints={"commit_interval": 0.2})])
    try:
        p.wait_for(is_event("assignment"))
        p.runner.commit(p.runner.sessions, {("demo-logstore", 9): cursor(1), ("demo-logstore", 0): cursor(2)})
        rec = p.wait_for(lambda r: r["event"] == "error" and r["error"]["code"] == "NotOwner")
        assert rec["source"] == "control" and rec["group"] == "demo-group"
        assert '"9"' in rec["error"]["message"] or "'9'" in rec["error"]["message"]
        p.wait_for(is_event("committed"))
        time.sleep(0.4)
        assert [r["checkpoints"] for r in commits(emulator)] == [{"demo-logstore": {"0": cursor(2)}}]
    finally:
        p.stop()


def test_a_bad_value_is_refused_before_it_is_sent(emulator: EmulatorServer) -> None:
    p = InProcess([sls(emulator, checkpoints={"commit_interval": 0.2})])
    try:
        p.wait_for(is_event("assignment"))
        p.runner.commit(p.runner.sessions, {("demo-logstore", 0): 12})  # an offset is no SLS cursor
        rec = p.wait_for(lambda r: r["event"] == "error" and r["error"]["code"] == "InvalidCheckpoint")
        assert rec["source"] == "control"
        time.sleep(0.4)
        assert commits(emulator) == []
    finally:
        p.stop()


def test_a_group_without_checkpoints_refuses_commit(emulator: EmulatorServer) -> None:
    p = InProcess([sls(emulator)])
    try:
        p.wait_for(is_event("assignment"))
        p.runner.commit(p.runner.sessions, {("demo-logstore", 0): cursor(1)})
        rec = p.wait_for(lambda r: r["event"] == "error" and r["error"]["code"] == "CheckpointsOff")
        assert rec["source"] == "control"
    finally:
        p.stop()


def test_a_server_refusal_is_reported_and_never_retried(emulator: EmulatorServer) -> None:
    emulator.world.faults.add(
        [{"effect": "status", "action": "UpdateCheckPoint", "status": 400, "error_code": "ConsumerNotMatch"}],
        emulator.world.mono_now(),
    )
    p = InProcess([sls(emulator, checkpoints={"commit_interval": 0.2})])
    try:
        p.wait_for(is_event("assignment"))
        p.runner.commit(p.runner.sessions, {("demo-logstore", 0): cursor(3)})
        rec = p.wait_for(lambda r: r["event"] == "error" and r["source"] == "commit")
        assert rec["error"]["code"] == "ConsumerNotMatch" and rec["error"]["status"] == 400
        assert "dropped" in rec["error"]["message"] and "retry_in_ms" not in rec
        time.sleep(1.0)
        assert len(commits(emulator)) == 1
        assert not [r for r in p.records if r["event"] == "committed"]
    finally:
        p.stop()


def test_faults_get_bounded_retries_without_a_storm(emulator: EmulatorServer) -> None:
    emulator.world.faults.add(
        [{"effect": "status", "action": "UpdateCheckPoint", "status": 500}], emulator.world.mono_now()
    )
    p = InProcess([sls(emulator, checkpoints={"commit_interval": 0.2})])
    try:
        p.wait_for(is_event("assignment"))
        p.runner.commit(p.runner.sessions, {("demo-logstore", 0): cursor(3)})
        p.wait_for(
            lambda r: r["event"] == "error" and r["source"] == "commit" and "dropped" in r["error"]["message"]
        )
        time.sleep(1.5)
        assert len(commits(emulator)) == 3  # MAX_ATTEMPTS, then the value is dropped
        emulator.world.faults.clear()
        p.runner.commit(p.runner.sessions, {("demo-logstore", 0): cursor(4)})
        rec = p.wait_for(is_event("committed"))
        assert rec["checkpoints"] == {"demo-logstore": {"0": cursor(4)}}
        assert len(commits(emulator)) == 4
        p.runner.emit_status()
        counters = p.wait_for(is_event("status"))["counters"]
        assert (counters["checkpoints_committed"], counters["checkpoints_dropped"]) == (1, 1)
    finally:
        p.stop()


def test_a_clean_stop_flushes_before_stopped(emulator: EmulatorServer) -> None:
    p = InProcess([sls(emulator, checkpoints={"commit_interval": 60})])
    p.wait_for(is_event("assignment"))
    p.runner.commit(p.runner.sessions, {("demo-logstore", 3): cursor(9)})
    time.sleep(0.2)
    assert commits(emulator) == []  # still pending: the interval is a minute
    p.stop()
    p.wait_for(is_event("stopped"))
    events = [r["event"] for r in p.records]
    assert events.index("committed") < events.index("lost") < events.index("stopped")
    assert stored(emulator, 3) == cursor(9)


def test_release_ack_with_checkpoints_hands_over_exactly_there(emulator: EmulatorServer) -> None:
    first = InProcess([sls(emulator, consumer="c1", release="ack", checkpoints={"commit_interval": 30})])
    second: InProcess | None = None
    try:
        first.wait_for(lambda r: r["event"] == "assignment" and len(r["assigned"]["demo-logstore"]) == 4)
        second = InProcess([sls(emulator, consumer="c2", release="ack", checkpoints={"start": "begin"})])
        revoke = first.wait_for(lambda r: r["event"] == "assignment" and r["revoked"] != {})
        revoked = revoke["revoked"]["demo-logstore"]
        final = {("demo-logstore", shard): cursor(1000 + shard) for shard in revoked}
        time.sleep(0.5)
        assert not [r for r in second.records if r["event"] == "assignment" and r["assigned"]]
        first.runner.release(first.runner.sessions, {"demo-logstore": frozenset(revoked)}, final)
        got = second.wait_for(lambda r: r["event"] == "assignment" and r["added"] != {})
        assert sorted(got["added"]["demo-logstore"]) == sorted(revoked)
        assert got["start"] == {
            "demo-logstore": {str(s): {"checkpoint": cursor(1000 + s), "from": "committed"} for s in revoked}
        }
        committed = first.wait_for(is_event("committed"))
        assert committed["checkpoints"] == {"demo-logstore": {str(s): cursor(1000 + s) for s in revoked}}
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_start_not_read_in_time_comes_in_a_later_start_record(emulator: EmulatorServer) -> None:
    emulator.world.faults.add(
        [{"effect": "status", "action": "GetCheckPoint", "status": 500, "count": 1}],
        emulator.world.mono_now(),
    )
    p = InProcess([sls(emulator, checkpoints={"start": "begin"})])
    try:
        rec = p.wait_for(is_event("assignment"))
        assert rec["start"] == {} and rec["added"] == {"demo-logstore": [0, 1, 2, 3]}
        error = p.wait_for(lambda r: r["event"] == "error" and r["source"] == "start")
        assert (
            error["error"]["code"] == "InternalServerError"
            and "later `start` record" in error["error"]["message"]
        )
        later = p.wait_for(is_event("start"))
        assert later["epoch"] == rec["epoch"]
        assert later["start"] == {
            "demo-logstore": {str(s): {"checkpoint": "MA==", "from": "begin"} for s in range(4)}
        }
        events = [r["event"] for r in p.records]
        assert events.index("assignment") < events.index("error") < events.index("start")
        time.sleep(0.7)
        assert len([r for r in p.records if r["event"] == "start"]) == 1  # owed once, delivered once
    finally:
        p.stop()


def test_a_value_made_before_the_shard_was_added_again_is_refused(emulator: EmulatorServer) -> None:
    p = InProcess([sls(emulator, checkpoints={"commit_interval": 0.2})])
    try:
        first = p.wait_for(is_event("assignment"))
        with p.runner._lock:  # a loss and a re-join: the shards are added again at a later epoch
            driver = p.runner.drivers[0]
            lost = driver.membership.drop("lease_expired")
            assert lost is not None
            driver._emit_event(lost, p.runner._clock.instant())
            p.runner._settle(driver)
        again = p.wait_for(lambda r: r["event"] == "assignment" and r["epoch"] > first["epoch"])
        p.runner.commit(p.runner.sessions, {("demo-logstore", 0): cursor(1)}, epoch=first["epoch"])
        rec = p.wait_for(lambda r: r["event"] == "error" and r["error"]["code"] == "StaleEpoch")
        assert rec["source"] == "control" and cursor(1) in rec["error"]["message"]
        p.runner.commit(p.runner.sessions, {("demo-logstore", 0): cursor(2)}, epoch=again["epoch"])
        assert p.wait_for(is_event("committed"))["checkpoints"] == {"demo-logstore": {"0": cursor(2)}}
        assert [c["checkpoints"] for c in commits(emulator)] == [{"demo-logstore": {"0": cursor(2)}}]
    finally:
        p.stop()


def test_a_huge_refused_commit_gives_a_short_error(emulator: EmulatorServer) -> None:
    p = InProcess([sls(emulator, checkpoints={"commit_interval": 0.2})])
    try:
        p.wait_for(is_event("assignment"))
        values = {("demo-logstore", shard): cursor(shard) for shard in range(100, 3100)}
        p.runner.commit(p.runner.sessions, values)
        rec = p.wait_for(lambda r: r["event"] == "error" and r["error"]["code"] == "NotOwner")
        assert len(rec["error"]["message"]) < 800 and "(3000 shards in all)" in rec["error"]["message"]
    finally:
        p.stop()
