"""GroupDriver step tests for checkpoints: start positions read before the assignment record (committed,
else the configured start; paced reads; owed starts in a later `start` record), lease-fenced offers,
commits after commit_interval, refusals and retries, release after the flush, the stop's flush, and
the `commit` op across groups. Fake clock, real providers (tests/driver_kit.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from driver_kit import LOGSTORE, TOPIC_A, TOPIC_B, FakeClock, Kit, group
from shardbeat.core.calls import Pause
from shardbeat.core.checkpoints import MAX_ATTEMPTS
from shardbeat.core.group_checkpoints import commit_across

A = {LOGSTORE: [0, 1, 2]}
C1, C2, C3 = "MQ==", "Mg==", "Mw=="  # SLS cursors are base64


def sls(**over: Any) -> Kit:
    config: dict[str, Any] = {"heartbeat_interval": 2, "timeout": 10}
    config["checkpoints"] = {"start": "begin", "commit_interval": 0.5}
    config.update(over)
    return Kit(group("sls", **config))


def joined(kit: Kit, assigned: dict[str, list[int]] = A) -> None:
    """Bootstrap and join; every start is read from the server's committed checkpoints."""
    kit.bootstrap()
    kit.beat(assigned)
    assert kit.only().action == "GetCheckPoint"
    kit.answer(kit.server.checkpoints({s: C1 for s in assigned[LOGSTORE]}))
    assert kit.events() == ["assignment"]


def error(kit: Kit) -> dict[str, Any]:
    kit.collect()
    (rec,) = kit.new_records()
    assert rec["event"] == "error"
    return rec


# -- start positions -------------------------------------------------------------------------------


def test_starts_are_read_before_the_assignment_record_committed_else_the_configured_start() -> None:
    kit = sls()
    kit.bootstrap()
    kit.beat(A)
    assert kit.events() == []  # the assignment waits for its start positions
    read = kit.only()
    assert read.action == "GetCheckPoint"
    kit.answer(kit.server.checkpoints({0: "", 1: "MTA=", 2: ""}))  # "": never committed
    for shard in (0, 2):
        cursor = kit.only()
        assert cursor.action == "GetCursor" and f"/shards/{shard}?" in cursor.send.request.target
        assert "from=begin" in cursor.send.request.target
        kit.answer(kit.server.cursor(f"QkVH{shard}"))
    (rec,) = kit.new_records()
    assert rec["event"] == "assignment" and rec["added"] == A
    assert rec["start"] == {
        LOGSTORE: {
            "0": {"checkpoint": "QkVH0", "from": "begin"},
            "1": {"checkpoint": "MTA=", "from": "committed"},
            "2": {"checkpoint": "QkVH2", "from": "begin"},
        }
    }


def test_cls_position_reads_are_paced() -> None:
    kit = Kit(group("cls", checkpoints={"start": "end"}))
    kit.bootstrap()
    kit.beat({TOPIC_A: [1], TOPIC_B: [2]})
    first = kit.only()
    assert first.action == "DescribeConsumerOffsets" and first.body["OffsetType"] == 0
    kit.answer(kit.server.offset(TOPIC_A, 1, 42))
    pause = kit.only().step
    assert isinstance(pause, Pause) and pause.until == pytest.approx(kit.clock.mono + 0.05)
    kit.resume()
    second = kit.only()
    assert second.body["TopicId"] == TOPIC_B and second.body["OffsetType"] == 0
    kit.answer(kit.server.offset(TOPIC_B, 2, 0))  # 0: none committed
    kit.resume()
    position = kit.only()
    assert position.body["OffsetType"] == 1 and position.body["From"] == "end"
    kit.answer(kit.server.offset(TOPIC_B, 2, 900))
    (rec,) = kit.new_records()
    assert rec["start"] == {
        TOPIC_A: {"1": {"checkpoint": 42, "from": "committed"}},
        TOPIC_B: {"2": {"checkpoint": 900, "from": "end"}},
    }


def test_a_start_not_read_comes_in_a_later_start_record() -> None:
    kit = sls()
    kit.bootstrap()
    kit.beat(A)
    kit.answer(kit.server.transient())  # GetCheckPoint fails
    assignment, failed = kit.new_records()
    assert assignment["event"] == "assignment" and assignment["start"] == {}
    assert failed["source"] == "start" and failed["error"]["code"] == "InternalServerError"
    assert "later `start` record" in failed["error"]["message"]
    kit.beat(A)  # the next beat reads the owed starts again
    kit.answer(kit.server.checkpoints({0: C1, 1: C2, 2: C3}))
    lease, start = kit.new_records()
    assert lease["event"] == "lease" and start["event"] == "start"
    assert start["epoch"] == assignment["epoch"]
    assert start["start"] == {
        LOGSTORE: {str(s): {"checkpoint": c, "from": "committed"} for s, c in ((0, C1), (1, C2), (2, C3))}
    }
    kit.beat(A)
    assert kit.pending == [] and kit.events() == ["lease"]  # owed once, delivered once


def test_start_reads_stop_at_their_deadline() -> None:
    kit = Kit(group("cls", heartbeat_interval=1, checkpoints={"start": "begin"}))
    kit.bootstrap()
    kit.beat({TOPIC_A: [1, 2, 3]})
    answered = kit.clock.mono
    kit.answer(kit.server.offset(TOPIC_A, 1, 5), after=0.3)
    kit.resume()
    kit.answer(kit.server.offset(TOPIC_A, 2, 6), after=0.1)
    pause = kit.only().step
    assert isinstance(pause, Pause) and pause.until == pytest.approx(answered + 0.5)  # half an interval
    kit.clock.to(answered + 0.51)  # the loop resumes it a little late
    kit.resume()  # the budget is spent: partition 3 is not read now
    assignment, failed = kit.new_records()
    assert assignment["start"] == {
        TOPIC_A: {str(p): {"checkpoint": p + 4, "from": "committed"} for p in (1, 2)}
    }
    assert failed["error"]["code"] == "Timeout" and "no time left" in failed["error"]["message"]
    assert kit.pending == []


def test_no_start_without_checkpoints() -> None:
    kit = Kit(group("sls"))
    kit.bootstrap()
    kit.beat(A)
    assert "start" not in kit.new_records()[0] and kit.pending == []


# -- offers -----------------------------------------------------------------------------------------


def test_an_offer_for_a_shard_not_held_is_refused_and_never_sent() -> None:
    kit = sls()
    joined(kit)
    assert kit.driver.offer({(LOGSTORE, 9): C1, (LOGSTORE, 0): C2}, kit.clock.now()) == 1
    rec = error(kit)
    assert (
        rec["source"] == "control" and rec["error"]["code"] == "NotOwner" and '"9"' in rec["error"]["message"]
    )
    kit.poll_due()
    assert kit.only().body == {"shard": 0, "checkpoint": C2}


def test_an_offer_made_before_the_shard_was_added_again_is_stale() -> None:
    kit = sls()
    joined(kit)
    kit.poll_due()
    kit.answer(kit.server.error(400, "NotExistConsumerWithBody", "consumer not exist"))
    assert kit.events() == ["lost", "error"]
    kit.beat(A)  # joined again: the shards are added at a later epoch
    kit.answer(kit.server.checkpoints({0: C1, 1: C1, 2: C1}))
    (again,) = kit.new_records()
    assert again["event"] == "assignment" and again["epoch"] == 3
    assert kit.driver.offer({(LOGSTORE, 0): C2}, kit.clock.now(), epoch=1) == 0
    rec = error(kit)
    assert rec["error"]["code"] == "StaleEpoch" and C2 in rec["error"]["message"]
    assert kit.driver.offer({(LOGSTORE, 0): C3}, kit.clock.now(), epoch=again["epoch"]) == 1


def test_a_value_the_service_cannot_take_is_refused_at_offer() -> None:
    kit = sls()
    joined(kit)
    assert kit.driver.offer({(LOGSTORE, 0): 12}, kit.clock.now()) == 0  # an offset is no SLS cursor
    assert error(kit)["error"]["code"] == "InvalidCheckpoint"
    assert kit.driver.commit_due() is None


def test_a_group_without_checkpoints_refuses_offers() -> None:
    kit = Kit(group("sls"))
    kit.bootstrap()
    kit.beat(A)
    kit.new_records()
    assert kit.driver.offer({(LOGSTORE, 0): C1}, kit.clock.now()) == 0
    assert error(kit)["error"]["code"] == "CheckpointsOff"


def test_a_huge_refused_offer_gives_a_short_message() -> None:
    kit = sls()
    joined(kit)
    kit.driver.offer({(LOGSTORE, shard): C1 for shard in range(100, 3100)}, kit.clock.now())
    message = error(kit)["error"]["message"]
    assert len(message) < 800 and "(3000 shards in all)" in message


# -- commits ----------------------------------------------------------------------------------------


def test_offers_are_coalesced_and_committed_after_the_commit_interval() -> None:
    kit = sls()
    joined(kit)
    offered = kit.clock.mono
    for value in (C1, C2, C3):
        kit.driver.offer({(LOGSTORE, 1): value}, kit.clock.now())
        kit.clock.advance(0.1)
    assert kit.driver.next_due() == pytest.approx(offered + 0.5)  # from the first offer
    kit.poll(offered + 0.499)
    assert kit.pending == []
    kit.poll_due()
    commit = kit.only()
    assert commit.action == "UpdateCheckPoint" and "forceSuccess=false" in commit.send.request.target
    assert commit.body == {"shard": 1, "checkpoint": C3}  # the latest value only
    kit.answer(kit.server.ok())
    (rec,) = kit.new_records()
    assert rec["event"] == "committed" and rec["checkpoints"] == {LOGSTORE: {"1": C3}} and rec["epoch"] == 1
    assert kit.driver.commit_due() is None
    assert kit.driver.status_record(kit.clock.now(), 0)["counters"]["checkpoints_committed"] == 1


def test_cls_commits_every_partition_in_one_request() -> None:
    kit = Kit(group("cls", heartbeat_interval=2, checkpoints={"commit_interval": 0.5}))
    kit.bootstrap()
    kit.beat({TOPIC_A: [1], TOPIC_B: [2]})
    for topic, partition, offset in ((TOPIC_A, 1, 50), (TOPIC_B, 2, 60)):
        kit.answer(kit.server.offset(topic, partition, offset))
        if kit.pending:
            kit.resume()
    kit.new_records()
    kit.driver.offer({(TOPIC_A, 1): 51, (TOPIC_B, 2): 61}, kit.clock.now())
    kit.poll_due()
    commit = kit.only()
    assert commit.action == "CommitConsumerOffsets"
    assert commit.body["TopicPartitionOffsetsInfo"] == [
        {"TopicID": TOPIC_A, "PartitionOffsets": [{"PartitionId": 1, "Offset": 51}]},
        {"TopicID": TOPIC_B, "PartitionOffsets": [{"PartitionId": 2, "Offset": 61}]},
    ]
    kit.answer(kit.server.ok())
    assert kit.new_records()[0]["checkpoints"] == {TOPIC_A: {"1": 51}, TOPIC_B: {"2": 61}}


def test_a_commit_the_server_refuses_is_dropped_and_never_retried() -> None:
    kit = sls()
    joined(kit)
    kit.driver.offer({(LOGSTORE, 0): C1}, kit.clock.now())
    kit.poll_due()
    kit.answer(kit.server.not_owner())
    rec = error(kit)
    assert rec["source"] == "commit" and rec["error"]["code"] == "ConsumerNotMatch"
    assert rec["error"]["status"] == 400 and "dropped" in rec["error"]["message"] and "retry_in_ms" not in rec
    assert kit.driver.commit_due() is None
    assert kit.driver.status_record(kit.clock.now(), 0)["counters"]["checkpoints_dropped"] == 1


def test_a_passing_fault_is_retried_a_bounded_number_of_times() -> None:
    kit = sls()
    joined(kit)
    kit.driver.offer({(LOGSTORE, 0): C1}, kit.clock.now())
    gaps = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        kit.poll_due()
        assert kit.only().action == "UpdateCheckPoint"
        kit.answer(kit.server.transient())
        message = error(kit)["error"]["message"]
        if attempt < MAX_ATTEMPTS:
            assert "will retry" in message
            due = kit.driver.commit_due()
            assert due is not None
            gaps.append(due - kit.clock.mono)
        else:
            assert "dropped" in message
    assert gaps == pytest.approx([0.2, 0.4])  # doubling from 0.2 s, capped at commit_interval
    assert kit.driver.commit_due() is None  # never retried forever


def test_a_loss_drops_pending_values_after_the_lost_record() -> None:
    kit = sls(checkpoints={"commit_interval": 30})
    joined(kit)
    kit.driver.offer({(LOGSTORE, 0): C1}, kit.clock.now())
    kit.poll_due()  # a beat that is never answered
    end = kit.driver.membership.lease.expires_at
    assert end is not None and kit.driver.next_due() == end
    kit.poll(end)
    lost, dropped = kit.new_records()
    assert lost["event"] == "lost"
    assert dropped["error"]["code"] == "NotOwner" and "lost before" in dropped["error"]["message"]
    assert kit.driver.commit_due() is None


def test_a_commit_call_that_hit_an_internal_error_is_retried() -> None:
    kit = sls()
    joined(kit)
    kit.driver.offer({(LOGSTORE, 0): C1}, kit.clock.now())
    kit.poll_due()
    kit.answer()  # the commit call fails inside (a bug): the shell calls recover()
    assert kit.internal_errors == 1 and kit.driver.checkpoints is not None
    assert kit.driver.checkpoints.sending is False
    assert kit.driver.commit_due() is not None  # the value is still pending
    kit.poll_due()
    assert kit.only().body == {"shard": 0, "checkpoint": C1}


# -- release and stop -------------------------------------------------------------------------------


def test_a_release_with_nothing_pending_is_immediate() -> None:
    kit = sls(release="ack", release_grace=60, checkpoints={"commit_interval": 30})
    joined(kit, {LOGSTORE: [0, 1, 2, 3]})
    kit.beat({LOGSTORE: [0, 1]})  # 2 and 3 are revoked
    assert kit.new_records()[0]["revoked"] == {LOGSTORE: [2, 3]}
    done = kit.driver.release({LOGSTORE: frozenset({2, 3})}, kit.clock.now())
    assert done == {LOGSTORE: frozenset({2, 3})} and kit.driver.membership.releasing == {}
    assert kit.driver.commit_due() is None


def test_release_with_a_pending_value_is_held_until_it_is_committed() -> None:
    kit = sls(release="ack", release_grace=60, checkpoints={"commit_interval": 30})
    joined(kit, {LOGSTORE: [0, 1, 2, 3]})
    kit.beat({LOGSTORE: [0, 1]})
    kit.new_records()
    kit.driver.offer({(LOGSTORE, 3): C3}, kit.clock.now())
    done = kit.driver.release({LOGSTORE: frozenset({2, 3})}, kit.clock.now())
    assert done == {LOGSTORE: frozenset({2})}  # 2 had nothing pending: released now
    assert kit.driver.membership.releasing == {LOGSTORE: frozenset({3})}
    assert kit.driver.next_due() <= kit.clock.mono  # the flush is due now, not in 30 s
    kit.poll()
    commits = [p for p in kit.pending if p.action == "UpdateCheckPoint"]
    assert [c.body for c in commits] == [{"shard": 3, "checkpoint": C3}]
    for p in [p for p in kit.pending if p.action == "HeartBeat"]:
        kit.answer(kit.server.assigned({LOGSTORE: [0, 1]}), call=p)
    assert kit.driver.membership.releasing == {LOGSTORE: frozenset({3})}  # still: not committed yet
    kit.answer(kit.server.ok(), call=commits[0])
    assert [r["event"] for r in kit.new_records() if r["event"] != "lease"] == ["committed"]
    assert kit.driver.membership.releasing == {}  # released once its value is on the server
    assert kit.driver.next_due() == kit.clock.mono  # and the server hears it at once


def test_values_offered_after_the_release_never_hold_the_shard_back_again() -> None:
    """A client that went on committing a shard after its `released` (faster than the service
    answered) kept it claimed for ever: each settle found a newer value pending and held it again."""
    kit = sls(release="ack", release_grace=60, checkpoints={"commit_interval": 30})
    joined(kit, {LOGSTORE: [0, 1, 2, 3]})
    kit.beat({LOGSTORE: [0, 1]})
    kit.new_records()
    kit.driver.offer({(LOGSTORE, 3): C1}, kit.clock.now())
    kit.driver.release({LOGSTORE: frozenset({2, 3})}, kit.clock.now())
    kit.poll()
    (commit,) = [p for p in kit.pending if p.action == "UpdateCheckPoint"]
    assert kit.driver.offer({(LOGSTORE, 3): C2, (LOGSTORE, 0): C3}, kit.clock.now()) == 1  # 0 only
    refusal = error(kit)
    assert refusal["error"]["code"] == "NotOwner" and "released" in refusal["error"]["message"]
    kit.answer(kit.server.ok(), call=commit)
    assert kit.driver.membership.releasing == {}  # released once the value it had is on the server
    committed = [r["checkpoints"] for r in kit.new_records() if r["event"] == "committed"]
    assert committed == [{LOGSTORE: {"3": C1}}]


def test_a_clean_stop_flushes_before_lost_and_stopped() -> None:
    kit = sls(checkpoints={"commit_interval": 60})
    joined(kit)
    kit.driver.offer({(LOGSTORE, 2): C2}, kit.clock.now())
    assert kit.driver.commit_due() == pytest.approx(kit.clock.mono + 60)
    deadline = kit.clock.mono + 1
    kit.driver.stopping = True  # the shell stops first, then flushes
    assert kit.driver.flush_for_stop(kit.clock.now(), deadline) is True
    kit.collect()
    commit = kit.only()
    assert commit.body == {"shard": 2, "checkpoint": C2} and commit.send.deadline <= deadline
    assert kit.driver.flush_for_stop(kit.clock.now(), deadline) is True  # still out
    kit.answer(kit.server.ok())
    assert kit.driver.flush_for_stop(kit.clock.now(), deadline) is False  # nothing left
    kit.driver.finish(kit.clock.now())
    kit.collect()
    assert kit.events() == ["committed", "lost", "stopped"]


def test_a_commit_answered_after_stopped_writes_nothing() -> None:
    kit = sls(checkpoints={"commit_interval": 60})
    joined(kit)
    kit.driver.offer({(LOGSTORE, 2): C2}, kit.clock.now())
    kit.driver.stopping = True
    kit.driver.flush_for_stop(kit.clock.now(), kit.clock.mono + 1)
    kit.collect()
    kit.driver.finish(kit.clock.now())
    kit.collect()
    assert kit.events() == ["lost", "stopped"]
    kit.answer(kit.server.ok())
    assert kit.events() == []  # `stopped` was the last record


def test_the_stop_flush_has_a_bounded_number_of_sends() -> None:
    kit = sls(checkpoints={"commit_interval": 60})
    joined(kit)
    kit.driver.offer({(LOGSTORE, 2): C2}, kit.clock.now())
    kit.driver.stopping = True
    deadline = kit.clock.mono + 10
    sends = 0
    while kit.driver.flush_for_stop(kit.clock.now(), deadline):
        kit.collect()
        sends += 1
        # downstream keeps committing newer values meanwhile: the book alone would retry forever
        kit.driver.offer({(LOGSTORE, 2): base64.b64encode(b"%d" % sends).decode()}, kit.clock.now())
        kit.answer(kit.server.transient())
        assert sends <= MAX_ATTEMPTS
    assert sends == MAX_ATTEMPTS


def test_commit_across_groups_gives_each_its_own_shards() -> None:
    clock = FakeClock()
    one = Kit(group("sls", consumer="c1", checkpoints={}), clock=clock, index=0)
    two = Kit(group("sls", consumer="c2", checkpoints={}), clock=clock, index=1)
    for kit, held in ((one, [0, 1]), (two, [2, 3])):
        kit.bootstrap()
        kit.beat({LOGSTORE: held})
        kit.answer(kit.server.checkpoints({s: C1 for s in held}))
        kit.new_records()
    values = {(LOGSTORE, 1): C1, (LOGSTORE, 3): C3, (LOGSTORE, 9): C2}
    assert commit_across([one.driver, two.driver], values, None, clock.now()) == 2
    one.collect()
    two.collect()
    refused = error(one)
    assert refused["error"]["code"] == "NotOwner" and "no matching group" in refused["error"]["message"]
    assert '"9"' in refused["error"]["message"] and '"1"' not in refused["error"]["message"]
    assert two.new_records() == []
    assert one.driver.checkpoints is not None and two.driver.checkpoints is not None
    assert one.driver.checkpoints.book.pending == {(LOGSTORE, 1): C1}
    assert two.driver.checkpoints.book.pending == {(LOGSTORE, 3): C3}
