"""Checkpoints end to end in-process: the Runner against the emulator (SLS and CLS).

Start positions (committed / begin / end / time), a commit round trip, a revoke with `release: ack`
carrying final checkpoints that the next owner starts from, and the flush of a clean stop before
`stopped`. The rules (fencing, refusals, retries, owed starts, stale epochs) are GroupDriver step
tests: tests/test_driver_checkpoints.py.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import wait_for
from shardbeat.emulator.fixtures import parse_fixtures
from shardbeat.emulator.server import EmulatorServer
from shardbeat.emulator.world import StoredCheckpoint
from shardbeat.runtime import control_replies as replies
from test_runner import InProcess, beats, fixtures, is_event
from test_runner import sls as runner_sls

Record = dict[str, Any]
# 1 s beats: a call's budget (heartbeats' and commits' alike) is 0.9 s of it. At 0.3 s beats a loaded
# machine timed calls out at 0.27 s: a commit resent after its Timeout is a second request in the
# log, and a run of timed-out heartbeats ends a lease, which hands shards on by the lease rule.
INTERVAL = 1.0


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(parse_fixtures(fixtures(shards=4))).start()
    server.world.log_origin -= 100  # 100 s of data in every shard
    yield server
    server.stop()


def sls(emulator: EmulatorServer, **over: Any) -> dict[str, Any]:
    return runner_sls(emulator, **{"heartbeat_interval": INTERVAL, **over})


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
        "heartbeat_interval": INTERVAL,
        "timeout": 3,
    }
    group.update(over)
    return group


def starts(p: InProcess, topic: str) -> dict[str, Any]:
    """Each shard's start so far: from its `assignment` record, or from the later `start` record of a
    position not read within the start budget (half an interval: a loaded machine can miss it)."""
    merged: dict[str, Any] = {}
    for rec in list(p.records):
        if rec["event"] in ("assignment", "start"):
            merged.update(rec.get("start", {}).get(topic, {}))
    return merged


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
        p.wait_for(is_event("assignment"))
        wait_for(lambda: len(starts(p, "demo-logstore")) >= 4, 10)
        start_field = starts(p, "demo-logstore")
        assert sorted(start_field) == ["0", "1", "2", "3"]
        assert start_field["2"] == {"checkpoint": cursor(77), "from": "committed"}
        for shard in ("0", "1", "3"):
            assert start_field[shard]["from"] == source
            at = position(start_field[shard]["checkpoint"])
            assert {"begin": at == 0, "end": at >= 100, "time": at == 40}[source], (source, at)
    finally:
        p.stop()


def test_a_commit_round_trip(emulator: EmulatorServer) -> None:
    """CLS (SLS commits go through the stop and release tests below): offered values coalesce into one
    request the emulator stores, then a `committed` record."""
    p = InProcess([cls(emulator, checkpoints={"commit_interval": 0.3})])
    try:
        p.wait_for(is_event("assignment"))
        for value in (5, 6, 7):
            p.runner.commit(p.runner.sessions, {("demo-topic-a", 1): value})
        rec = p.wait_for(is_event("committed"))
        assert rec["checkpoints"] == {"demo-topic-a": {"1": 7}}
        time.sleep(0.4)  # past another commit_interval: no second request
        log = commits(emulator)
        assert len(log) == 1 and log[0]["checkpoints"] == {"demo-topic-a": {"1": 7}}
        assert log[0]["error"] is None and log[0]["consumer"] == "c1"
        assert [r for r in p.records if r["event"] == "committed"] == [rec]
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
        # Two of second's beats after the revoke (waited for: a loaded machine beats late) get nothing.
        n = len(beats(emulator, "c2"))
        assert wait_for(lambda: len(beats(emulator, "c2")) >= n + 2, 30)
        assert not [r for r in second.records if r["event"] == "assignment" and r["assigned"]]
        asked = {"demo-logstore": frozenset([*revoked, 99])}
        done = first.runner.release(first.runner.sessions, asked, final)
        # The reply to that `released`: its shards were waiting (held back only for their commit).
        entry = replies.released("released", asked, first.runner.sessions, done)["groups"][0]
        assert entry["not_releasing"] == {"demo-logstore": [99]}
        assert entry["released"] == {} and entry["releasing"] == {"demo-logstore": sorted(revoked)}
        got = second.wait_for(lambda r: r["event"] == "assignment" and r["added"] != {})
        assert sorted(got["added"]["demo-logstore"]) == sorted(revoked)
        wait_for(lambda: len(starts(second, "demo-logstore")) >= len(revoked), 10)
        assert starts(second, "demo-logstore") == {
            str(s): {"checkpoint": cursor(1000 + s), "from": "committed"} for s in revoked
        }
        committed = first.wait_for(is_event("committed"))
        assert committed["checkpoints"] == {"demo-logstore": {str(s): cursor(1000 + s) for s in revoked}}
    finally:
        first.stop()
        if second is not None:
            second.stop()
