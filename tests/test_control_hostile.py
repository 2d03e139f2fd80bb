"""Hostile control input found by the adversarial pass: keys given twice, integers no format can carry,
replies that would not encode, floods of `heartbeat` that burned the process's on-demand budget, and
`commit` epochs from an earlier run. Each test failed before its fix."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import msgpack
import pytest

from driver_kit import LOGSTORE, MONO0, FakeClock, Kit, group
from shardbeat.core.on_demand import OnDemandBudget
from shardbeat.runtime.control import (
    INVALID_MESSAGE,
    MAX_INTEGER,
    ControlDecoder,
    ControlMessage,
    message_from,
)
from shardbeat.runtime.control_outbox import REPLY_NOT_ENCODABLE, encode_reply
from shardbeat.schemas import load_schema

CONTROL = jsonschema.Draft202012Validator(load_schema("control"))
REPLY = jsonschema.Draft202012Validator(load_schema("reply"))


def decoded(data: bytes, byte_by_byte: bool = False) -> list[str]:
    decoder = ControlDecoder()
    out = []
    for piece in [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]:
        out += decoder.feed(piece)
    out += decoder.finish()
    return [i.op if isinstance(i, ControlMessage) else f"!{i.code}: {i.message}" for i in out]


# -- a key given twice -----------------------------------------------------------------------------

STATUS_THEN_STOP = b'{"op": "status", "op": "stop"}\n'
PACKED_STATUS_THEN_STOP = b"\x82\xa2op\xa6status\xa2op\xa4stop"  # a map of two "op" keys


@pytest.mark.parametrize("byte_by_byte", [False, True])
@pytest.mark.parametrize(
    "bad",
    [
        STATUS_THEN_STOP,
        b'{"op": "held", "group": "g", "shards": {"t": [1], "t": [2]}}\n',
        b'{"op": "commit", "group": "g", "group": "h", "checkpoints": {}}\n',
        b'{"op": "commit", "group": "g", "checkpoints": {"t": {"0": "MQ==", "0": "Mg=="}}}\n',
    ],
)
def test_a_json_key_given_twice_is_refused_not_read_as_the_last(bad: bytes, byte_by_byte: bool) -> None:
    out = decoded(bad + b'{"op": "status"}\n', byte_by_byte)
    assert len(out) == 2 and out[1] == "status"
    assert out[0].startswith(f"!{INVALID_MESSAGE}") and "given twice" in out[0]


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_a_msgpack_key_given_twice_is_refused_and_the_stream_goes_on(byte_by_byte: bool) -> None:
    nested = b"\x83\xa2op\xa6commit\xa5group\xa1g\xabcheckpoints\x81\xa1t\x82\x01\xa4MQ==\x01\xa4Mg=="
    data = PACKED_STATUS_THEN_STOP + msgpack.packb({"op": "status"}) + nested + msgpack.packb({"op": "stop"})
    out = decoded(data, byte_by_byte)
    assert [o if not o.startswith("!") else o.split(":")[0] for o in out] == [
        f"!{INVALID_MESSAGE}",
        "status",
        f"!{INVALID_MESSAGE}",
        "stop",
    ]
    assert '"op" is given twice' in out[0] and "field 1 is given twice" in out[2]


# -- integers past int64 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        {"op": "released", "group": "g", "shards": {"t": [MAX_INTEGER + 1]}},
        {"op": "held", "group": "g", "shards": {"t": [1e300]}},
        {"op": "commit", "group": "g", "checkpoints": {"t": {"0": 1}}, "epoch": MAX_INTEGER + 1},
        {"op": "commit", "group": "g", "checkpoints": {"t": {"0": 1}}, "epoch": 1e300},
    ],
)
def test_shard_ids_and_epochs_past_int64_are_refused_as_the_schema_does(doc: dict[str, Any]) -> None:
    found = message_from(doc)
    assert not isinstance(found, ControlMessage)
    assert found.code == INVALID_MESSAGE and "at most" in found.message
    assert not CONTROL.is_valid(doc)


def test_int64_itself_is_still_a_shard_id_and_an_epoch() -> None:
    doc = {
        "op": "released",
        "group": "g",
        "shards": {"t": [MAX_INTEGER]},
        "checkpoints": {},
        "epoch": MAX_INTEGER,
    }
    assert isinstance(message_from(doc), ControlMessage) and CONTROL.is_valid(doc)


@pytest.mark.parametrize("mode", ["msgpack", "json"])
def test_a_reply_that_will_not_encode_is_answered_with_a_failure_all_the_same(mode: Any) -> None:
    unencodable = {"op": "released", "ok": True, "groups": [{"released": {"t": [2**64]}, "x": object()}]}
    data = encode_reply(unencodable, mode)
    reply = msgpack.unpackb(data) if mode == "msgpack" else json.loads(data)
    assert reply["ok"] is False and reply["op"] == "released"
    assert reply["error"]["code"] == REPLY_NOT_ENCODABLE
    REPLY.validate(reply)


# -- the process's on-demand budget --------------------------------------------------------------

A = {LOGSTORE: [0, 1, 2]}


def test_repeated_asks_take_no_budget_slot_they_will_not_use() -> None:
    """A flood of `heartbeat` for every group once took a slot per group per ask (each one later
    than the group's queued beat, so never used), pushing the budget minutes ahead: an operator's
    ask (or a reload after a key fix) then waited for the grid. Only used slots may be taken."""
    clock = FakeClock()
    config = {"heartbeat_interval": 20, "timeout": 60}
    kits = [Kit(group("sls", consumer=f"c{i}", **config), clock=clock, index=i) for i in range(3)]
    for kit in kits:
        kit.bootstrap()
        kit.beat(A)
    clock.to(MONO0 + 5)  # past each group's spacing, long before its next tick
    budget = OnDemandBudget(rate=10)
    for _ in range(1000):  # the flood: all three groups asked again and again, none polled yet
        for kit in kits:
            kit.driver.ask_beat(clock.mono, budget)
    dues = [kit.driver.next_due() for kit in kits]
    assert dues == pytest.approx([clock.mono, clock.mono + 0.1, clock.mono + 0.2])
    assert budget.earliest(clock.mono) == pytest.approx(clock.mono + 0.3)  # three slots, not 3000


def test_an_ask_whose_group_beats_sooner_anyway_takes_no_slot() -> None:
    clock = FakeClock()
    kits = [
        Kit(group("sls", consumer=f"c{i}", heartbeat_interval=20, timeout=60), clock=clock, index=i)
        for i in range(2)
    ]
    for kit in kits:
        kit.bootstrap()
        kit.beat(A)
    budget = OnDemandBudget(rate=0.01)  # one slot per 100 s
    clock.to(MONO0 + 5)
    kits[0].driver.ask_beat(clock.mono, budget)  # takes the slot now
    kits[1].driver.ask_beat(clock.mono, budget)  # the next slot is past its own grid beat: no slot
    assert kits[1].driver.next_due() < clock.mono + 100
    assert budget.earliest(clock.mono) == pytest.approx(clock.mono + 100)  # one slot taken, not two


# -- commit epochs -----------------------------------------------------------------------------------


def test_a_commit_epoch_newer_than_any_record_of_this_run_is_refused() -> None:
    """Epochs count from 1 in every run: a value made under an earlier run's epoch 7 may predate a
    loss, so it must not pass the epoch fence just because 7 is larger than this run's epochs."""
    kit = Kit(group("sls", heartbeat_interval=2, timeout=10, checkpoints={"start": "begin"}))
    kit.bootstrap()
    kit.beat(A)
    kit.answer(kit.server.checkpoints({0: "MQ==", 1: "MQ==", 2: "MQ=="}))
    (assignment,) = kit.new_records()
    assert assignment["epoch"] == 1
    assert kit.driver.offer({(LOGSTORE, 0): "Mg=="}, kit.clock.now(), epoch=7) == 0
    kit.collect()
    (refusal,) = kit.new_records()
    assert refusal["event"] == "error" and refusal["error"]["code"] == "StaleEpoch"
    assert "newer than this group's latest (1)" in refusal["error"]["message"]
    assert kit.driver.offer({(LOGSTORE, 0): "Mg=="}, kit.clock.now(), epoch=1) == 1  # its own epoch passes


# -- nothing follows `stopped` -----------------------------------------------------------------------


class _Writer:
    """What the Runner writes, kept in a list (no thread, no pipe)."""

    dropped = 0
    broken = False
    broken_reason = None

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def emit(self, record: dict[str, Any], on_written: object = None, wake: bool = True) -> None:
        self.records.append(record)

    def wake(self) -> None:
        pass


def test_control_ops_racing_a_stop_write_nothing_after_stopped() -> None:
    """A flood of status/commit/bad ops during a stop wrote hundreds of records after each group's
    `stopped` (meant to be its last), kept the writer from flushing and made a clean stop exit 1."""
    from shardbeat.config import config_from_dict
    from shardbeat.runtime.runner import Runner

    config = config_from_dict(
        {
            "groups": [
                {
                    "provider": "sls",
                    "endpoint": "http://127.0.0.1:1",
                    "project": "proj",
                    "logstore": LOGSTORE,
                    "consumer_group": "demo-group",
                    "consumer": "c",
                    "credentials": {"access_key_id": "a", "access_key_secret": "s"},
                    "checkpoints": {},
                }
            ]
        }
    ).config
    writer = _Writer()
    runner = Runner(config.groups, writer)  # type: ignore[arg-type]
    try:
        at = FakeClock().now()
        for driver in runner.sessions:
            driver.finish(at)
            runner._settle(driver)
        assert [r["event"] for r in writer.records] == ["stopped"]
        runner.emit_status()
        runner.commit(runner.sessions, {(LOGSTORE, 0): "MQ=="})
        runner.control_error("InvalidJson", "socket: not JSON")
        runner.held(runner.sessions, {})
        assert [r["event"] for r in writer.records] == ["stopped"]
        assert runner.emit_status(write=False)  # a socket client still gets its answer
    finally:
        runner._exchange.close()


def test_a_loop_of_status_ops_cannot_flood_the_record_stream() -> None:
    """Every `status` op wrote a record per group: a client looping on it wrote ~9000 records a
    second downstream. Records now follow a few asks at once, then one a second; every ask is answered."""
    from shardbeat.config import config_from_dict
    from shardbeat.runtime.control_channels import REPORT_BURST, ProblemBudget
    from shardbeat.runtime.runner import Runner

    groups = [
        {
            "provider": "sls",
            "endpoint": "http://127.0.0.1:1",
            "project": "proj",
            "logstore": LOGSTORE,
            "consumer_group": "demo-group",
            "consumer": consumer,
            "credentials": {"access_key_id": "a", "access_key_secret": "s"},
        }
        for consumer in ("c1", "c2")
    ]
    writer = _Writer()
    runner = Runner(config_from_dict({"groups": groups}).config.groups, writer)  # type: ignore[arg-type]
    now = [0.0]
    runner._status_asks = ProblemBudget(clock=lambda: now[0])
    try:
        answers = [runner.emit_status() for _ in range(200)]
        assert all(len(a) == 2 for a in answers)  # every ask gets the figures of both groups
        assert len([r for r in writer.records if r["event"] == "status"]) == 2 * REPORT_BURST
        now[0] += 1.0
        runner.emit_status()
        runner.emit_status()
        assert len([r for r in writer.records if r["event"] == "status"]) == 2 * REPORT_BURST + 2
    finally:
        runner._exchange.close()


# -- a walk over every group lets the loop thread in -------------------------------------------------


class _CountingLock:
    """An RLock that counts how many groups were visited per hold."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.RLock()
        self.holds: list[int] = []
        self.depth = 0

    def __enter__(self) -> None:
        self._lock.acquire()
        self.depth += 1
        if self.depth == 1:
            self.holds.append(0)

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        self._lock.release()

    def visited(self) -> None:
        self.holds[-1] += 1


def test_status_and_snapshot_of_many_groups_never_hold_the_lock_for_all_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`status` at 3000 groups held the runner's lock for 70-240 ms in one piece (every beat due
    meanwhile was late: p99 lateness 7 ms -> 600 ms under a loop of `status`)."""
    from shardbeat.config import config_from_dict
    from shardbeat.core.driver import GroupDriver
    from shardbeat.runtime import lock_walk
    from shardbeat.runtime.runner import Runner

    monkeypatch.setattr(lock_walk, "HOLD_SECONDS", 0.0)  # one group per hold
    monkeypatch.setattr(lock_walk, "YIELD_SECONDS", 0.0)
    groups = [
        {
            "provider": "sls",
            "endpoint": "http://127.0.0.1:1",
            "project": "proj",
            "logstore": f"ls-{i}",
            "consumer_group": "demo-group",
            "consumer": "c",
            "credentials": {"access_key_id": "a", "access_key_secret": "s"},
        }
        for i in range(20)
    ]
    runner = Runner(config_from_dict({"groups": groups}).config.groups, _Writer())  # type: ignore[arg-type]
    lock = _CountingLock()
    runner._lock = lock  # type: ignore[assignment]
    for name in ("status_record", "snapshot"):
        real = getattr(GroupDriver, name)

        def counted(self: GroupDriver, *args: Any, _real: Any = real) -> Any:
            assert lock.depth > 0  # each group is still read under the lock
            lock.visited()
            return _real(self, *args)

        monkeypatch.setattr(GroupDriver, name, counted)
    try:
        assert len(runner.emit_status(write=False)) == 20
        assert len(runner.snapshot()) == 20
        assert lock.holds == [1] * 40
    finally:
        runner._exchange.close()


@pytest.mark.parametrize("mode", ["json", "msgpack", None])
def test_a_big_reply_encoded_an_entry_at_a_time_is_the_same_bytes(mode: Any) -> None:
    from shardbeat.runtime.control_outbox import _encoded

    doc = {
        "op": "status",
        "ok": True,
        "groups": [{"g": f"\ud800é{i}", "n": [i, None, 2.5]} for i in range(50)],
    }
    assert encode_reply(doc, mode) == _encoded(doc, mode)


# -- reload ops ------------------------------------------------------------------------------------


def test_reload_ops_never_run_on_the_socket_thread_and_share_one_reload() -> None:
    """Each `reload` op re-read the config on the socket thread (2 s for 3000 groups): 20 of them
    kept every other socket client waiting 32 s, and none shared a reload as SIGHUP's do."""
    import threading
    from typing import cast

    from shardbeat.runtime.control import ControlMessage
    from shardbeat.runtime.process import ControlHandler

    release = threading.Event()
    reloads: list[int] = []

    class SlowRunner:
        sessions: list[object] = []

        def refresh_credentials(self) -> None:
            reloads.append(1)
            release.wait(0.5)  # a reload that takes its time (a big config, a slow disk)

        def beat_now(self, targets: object) -> None:
            pass

    handler = ControlHandler(cast(Any, SlowRunner()), cast(Any, None), None)
    replies: list[dict[str, Any]] = []
    for _ in range(20):
        handler.control(ControlMessage("reload"), reply=replies.append)
    assert len(replies) == 20 and all(r == {"op": "reload", "ok": True} for r in replies)  # at once
    release.set()
    deadline = threading.Event()
    for _ in range(100):  # bounded: the reload thread finishes its (at most two) reloads
        if len(reloads) >= 1:
            break
        deadline.wait(0.02)
    deadline.wait(0.2)
    assert 1 <= len(reloads) <= 2
