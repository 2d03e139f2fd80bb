"""The ownership checker (tests/ownership.py) on hand-made timelines, including ones it must flag:
a checker that cannot fail proves nothing about the fault runs it judges."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ownership import (
    Expiry,
    Interval,
    Receipt,
    check,
    commit_violations,
    expiry_gaps,
    first_cover,
    lease_beyond_server,
    overlaps,
    ownership_intervals,
    parse_time,
    receipts_from_log,
    record_violations,
    server_expiries,
    watchdog_delays,
)
from shardbeat.core.records import rfc3339

T0 = 1_800_000_000.0  # an arbitrary epoch second; offsets below are seconds after it
LS = "logstore"


def at(offset: float) -> float:
    return T0 + offset


def stamp(offset: float) -> str:
    """Record time `offset` s after T0, exact to the millisecond (no float floor surprises)."""
    ms = round(offset * 1000)
    when = dt.datetime.fromtimestamp(T0 + ms // 1000, dt.UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def assignment(t: float, ids: list[int], lease: float, topic: str = LS) -> dict[str, Any]:
    return {
        "event": "assignment",
        "time": stamp(t),
        "assigned": {topic: ids} if ids else {},
        "lease_expires": stamp(lease),
    }


def lease(t: float, until: float) -> dict[str, Any]:
    return {"event": "lease", "time": stamp(t), "lease_expires": stamp(until)}


def lost(t: float, ids: list[int] | None = None) -> dict[str, Any]:
    return {"event": "lost", "time": stamp(t), "lost": {LS: ids or []}, "reason": "lease_expired"}


def stopped(t: float) -> dict[str, Any]:
    return {"event": "stopped", "time": stamp(t)}


def error(t: float) -> dict[str, Any]:
    return {"event": "error", "time": stamp(t), "error": {"code": "Timeout"}}


def spans(intervals: list[Interval]) -> list[tuple[str, int, float, float]]:
    return [(i.node, i.shard[1], round(i.start - T0, 3), round(i.end - T0, 3)) for i in intervals]


# -- reading records ------------------------------------------------------------------------------


def test_parse_time_reads_what_the_records_print() -> None:
    assert parse_time(stamp(1.234)) == pytest.approx(at(1.234), abs=1e-6)
    assert parse_time(rfc3339(at(1.234))) == pytest.approx(at(1.234), abs=0.001)  # the product's format
    assert parse_time("2027-01-15T08:00:00.000Z") < parse_time("2027-01-15T08:00:00.001Z")
    with pytest.raises(ValueError):
        parse_time("2027-01-15T08:00:00.000")  # no zone: not comparable across machines


# -- one node's intervals ---------------------------------------------------------------------------


def test_revoke_ends_ownership_at_the_record_time() -> None:
    recs = [assignment(0, [0, 1], 2), lease(0.5, 2.5), assignment(1.0, [1], 3), lease(1.5, 3.5)]
    got = spans(ownership_intervals("a", recs))
    # 0 ends at the revoke; 1 runs on to the last lease (nothing more was printed)
    assert sorted(got) == [("a", 0, 0.0, 1.0), ("a", 1, 0.0, 3.5)]


def test_lease_ends_ownership_when_the_lost_record_is_late() -> None:
    recs = [assignment(0, [0], 2), lost(2.7, [0])]
    assert spans(ownership_intervals("a", recs)) == [("a", 0, 0.0, 2.0)]
    assert record_violations("a", recs) == []  # a late lost is not a lapse: nothing continued


def test_lost_before_the_lease_ends_ownership_at_the_lost() -> None:
    recs = [assignment(0, [0], 2), {**lost(1.2, [0]), "reason": "consumer_unknown"}]
    assert spans(ownership_intervals("a", recs)) == [("a", 0, 0.0, 1.2)]


def test_silent_node_owns_until_its_lease_and_stopped_ends_it() -> None:
    assert spans(ownership_intervals("a", [assignment(0, [3], 2), lease(0.5, 2.5)])) == [("a", 3, 0.0, 2.5)]
    assert spans(ownership_intervals("a", [assignment(0, [3], 2), stopped(0.8)])) == [("a", 3, 0.0, 0.8)]


def test_errors_and_unknown_events_change_nothing() -> None:
    recs = [assignment(0, [0], 2), error(0.5), {"event": "status", "time": stamp(0.6)}, lease(1, 3)]
    assert spans(ownership_intervals("a", recs)) == [("a", 0, 0.0, 3.0)]


def test_lease_never_shrinks_in_the_checker() -> None:
    # downstream was told 3.0; a later record saying 2.5 does not take that back
    recs = [assignment(0, [0], 3), lease(1, 2.5)]
    assert spans(ownership_intervals("a", recs)) == [("a", 0, 0.0, 3.0)]


def test_reassignment_after_a_loss_is_a_new_interval() -> None:
    recs = [assignment(0, [0], 2), lost(2.0, [0]), assignment(4, [0], 6)]
    assert spans(ownership_intervals("a", recs)) == [("a", 0, 0.0, 2.0), ("a", 0, 4.0, 6.0)]


def test_topics_are_distinct_shards() -> None:
    recs = [assignment(0, [1], 2, topic="a"), assignment(0.5, [1], 2, topic="b")]
    got = ownership_intervals("n", recs)
    assert {(i.shard, round(i.start - T0, 3), round(i.end - T0, 3)) for i in got} == {
        (("a", 1), 0.0, 0.5),
        (("b", 1), 0.5, 2.0),
    }


# -- violations in one node's records ---------------------------------------------------------------


def test_lease_record_after_a_lapse_is_flagged_and_revives_nothing() -> None:
    recs = [assignment(0, [0], 2), lease(2.5, 4.5)]  # no lost at 2.0: downstream kept going
    [v] = record_violations("a", recs)
    assert v.kind == "lapse" and v.node == "a" and "lease" in v.detail
    assert spans(ownership_intervals("a", recs)) == [("a", 0, 0.0, 2.0)]


def test_assignment_after_a_lapse_is_flagged_and_starts_afresh() -> None:
    recs = [assignment(0, [0], 2), assignment(2.5, [0], 4.5)]
    assert [v.kind for v in record_violations("a", recs)] == ["lapse"]
    assert spans(ownership_intervals("a", recs)) == [("a", 0, 0.0, 2.0), ("a", 0, 2.5, 4.5)]


def test_record_at_the_lease_millisecond_is_not_a_lapse() -> None:
    # millisecond resolution: an answer handled a hair before expiry can print the lease's millisecond
    assert record_violations("a", [assignment(0, [0], 2), lease(2.0, 4)]) == []


def test_lease_without_an_assignment_is_flagged() -> None:
    assert [v.kind for v in record_violations("a", [lease(0, 2)])] == ["orphan-lease"]
    recs = [assignment(0, [0], 2), lost(1, [0]), lease(1.5, 3.5)]
    assert [v.kind for v in record_violations("a", recs)] == ["orphan-lease"]


def test_assignment_already_past_its_lease_is_flagged() -> None:
    assert [v.kind for v in record_violations("a", [assignment(3, [0], 2)])] == ["expired-grant"]


# -- overlaps between nodes ---------------------------------------------------------------------------


def test_clean_handover_is_not_an_overlap() -> None:
    a = [assignment(0, [0, 1], 2), lease(0.5, 2.5)]  # a goes silent; lease ends at 2.5
    b = [assignment(0, [2], 2), lease(1.0, 3.0), lease(2.0, 4.0), assignment(3.2, [0, 1, 2], 5.2)]
    report = check({"a": a, "b": b})
    assert report.overlaps == [] and report.violations == []


def test_grant_inside_the_old_owners_lease_is_an_overlap() -> None:
    a = [assignment(0, [0, 1], 2), lease(0.5, 2.5)]
    b = [assignment(2.4, [1], 4.4)]  # 100 ms before a's lease ran out
    [o] = check({"a": a, "b": b}).overlaps
    assert o.shard == (LS, 1)
    assert {o.first.node, o.second.node} == {"a", "b"}
    assert o.seconds == pytest.approx(0.1, abs=1e-6)


def test_one_millisecond_is_an_overlap_and_touching_is_not() -> None:
    a = [assignment(0, [0], 2)]
    assert (
        len(overlaps(ownership_intervals("a", a) + ownership_intervals("b", [assignment(1.999, [0], 4)])))
        == 1
    )
    assert overlaps(ownership_intervals("a", a) + ownership_intervals("b", [assignment(2.0, [0], 4)])) == []


def test_late_lost_does_not_cause_an_overlap_the_lease_prevents() -> None:
    a = [assignment(0, [0], 2), lost(3.0, [0])]  # lost printed late (e.g. a frozen process)
    b = [assignment(2.5, [0], 4.5)]
    assert check({"a": a, "b": b}).overlaps == []


def test_revoke_then_grant_elsewhere_is_clean_but_grant_before_revoke_is_not() -> None:
    a = [assignment(0, [0, 1], 2), assignment(0.5, [1], 2.5)]
    assert check({"a": a, "b": [assignment(0.6, [0], 2.6)]}).overlaps == []
    assert len(check({"a": a, "b": [assignment(0.4, [0], 2.4)]}).overlaps) == 1


def test_same_node_twice_is_not_an_overlap_and_three_way_overlaps_are_all_reported() -> None:
    same = ownership_intervals("a", [assignment(0, [0], 2)]) * 2
    assert overlaps(same) == []
    many = [Interval(n, (LS, 0), at(0), at(1)) for n in "abc"]
    assert len(overlaps(many)) == 3


def test_overlap_is_found_even_behind_a_long_interval() -> None:
    # sorted by start, `a` is first and long; b and c overlap each other, not only a
    intervals = [
        Interval("a", (LS, 0), at(0), at(10)),
        Interval("b", (LS, 0), at(1), at(2)),
        Interval("c", (LS, 0), at(1.5), at(3)),
    ]
    pairs = {(o.first.node, o.second.node) for o in overlaps(intervals)}
    assert pairs == {("a", "b"), ("a", "c"), ("b", "c")}


def test_report_problems_are_readable() -> None:
    report = check({"a": [assignment(0, [0], 2)], "b": [assignment(1, [0], 3), lease(3.5, 5)]})
    text = "\n".join(report.problems())
    assert "overlap on ('logstore', 0)" in text and "lapse at b" in text


# -- convergence ------------------------------------------------------------------------------------------


def test_first_cover_finds_the_instant_the_group_settles() -> None:
    everything = {(LS, i) for i in range(4)}
    a = [assignment(0, [0, 1, 2, 3], 10)]
    b = [assignment(1, [], 11), assignment(3, [2, 3], 13)]
    a.append(assignment(2, [0, 1], 12))
    intervals = ownership_intervals("a", a) + ownership_intervals("b", b)
    assert first_cover(intervals, ["a", "b"], everything, since=at(0.5)) == pytest.approx(at(3))
    # from the start, `a` alone covers everything but `b` owns none: not balanced
    assert first_cover(intervals, ["a"], everything, since=at(0)) == pytest.approx(at(0))
    assert first_cover(intervals, ["a", "b"], everything, since=at(20)) is None


def test_cover_must_be_disjoint() -> None:
    everything = {(LS, 0), (LS, 1)}
    intervals = [
        Interval("a", (LS, 0), at(0), at(5)),
        Interval("a", (LS, 1), at(0), at(5)),
        Interval("b", (LS, 1), at(0), at(5)),
    ]
    assert first_cover(intervals, ["a", "b"], everything, since=at(0)) is None


# -- the server's view ------------------------------------------------------------------------------------


def receipt(node: str, t: float, processed: bool = True) -> Receipt:
    return Receipt(node, at(t), processed)


def test_receipts_from_log_moves_monotonic_to_wall_and_marks_processed() -> None:
    log = [
        {"consumer": "a", "group": "g", "mono": 10.0, "assigned": {LS: [0]}, "error": None},
        {"consumer": "a", "group": "g", "mono": 11.0, "assigned": None, "error": "InternalServerError"},
        {"consumer": "b", "group": "g", "mono": 12.0, "assigned": None, "error": None},  # hang/reset
        {"consumer": "c", "group": "other", "mono": 13.0, "assigned": {}, "error": None},
    ]
    got = receipts_from_log(log, mono_to_wall=100.0, group="g")
    assert got == [Receipt("a", 110.0, True), Receipt("a", 111.0, False), Receipt("b", 112.0, False)]


def test_lease_within_receipt_plus_timeout_passes() -> None:
    recs = [assignment(0.05, [0], 2.0), lease(0.55, 2.5)]  # sent at 0 and 0.5, timeout 3, margin 1
    assert lease_beyond_server("a", recs, [receipt("a", 0.01), receipt("a", 0.51)], timeout=3) == []


def test_lease_past_the_server_deadline_is_flagged() -> None:
    recs = [assignment(0.05, [0], 3.02)]  # 10 ms past receipt + timeout
    [v] = lease_beyond_server("a", recs, [receipt("a", 0.01)], timeout=3)
    assert v.kind == "lease-beyond-server" and "0.010s past" in v.detail


def test_lease_without_any_processed_receipt_is_flagged() -> None:
    recs = [assignment(0.05, [0], 2.0)]
    assert len(lease_beyond_server("a", recs, [receipt("a", 0.01, processed=False)], timeout=3)) == 1
    assert len(lease_beyond_server("a", recs, [receipt("b", 0.01)], timeout=3)) == 1  # someone else's
    assert len(lease_beyond_server("a", recs, [receipt("a", 0.2)], timeout=3)) == 1  # after the record


def test_only_receipts_before_the_record_count() -> None:
    # a later receipt would excuse the lease, but the record was printed before it existed
    recs = [lease(1.0, 4.5)]
    found = lease_beyond_server("a", [assignment(0, [0], 2.9), *recs], [receipt("a", 0), receipt("a", 2)], 3)
    assert [round(v.time - T0, 3) for v in found] == [1.0]


def test_server_expiries_from_silences_of_a_whole_timeout() -> None:
    rs = [receipt("a", 0), receipt("a", 0.5), receipt("a", 4.0), receipt("a", 2.0, processed=False)]
    rs += [receipt("b", 0), receipt("b", 2.9)]
    got = server_expiries(rs, timeout=3, until=at(5.0))
    assert got == [Expiry("a", at(0.5), at(3.5))]
    got = server_expiries(rs, timeout=3, until=at(7.5))
    assert [(e.node, round(e.at - T0, 3)) for e in got] == [("a", 3.5), ("a", 7.0), ("b", 5.9)]


def test_expiry_gaps_relate_the_nodes_lease_and_lost_to_the_server() -> None:
    recs = [assignment(0.05, [0], 2.0), lease(0.55, 2.5), error(1.0), lost(2.5, [0]), assignment(4.1, [0], 6)]
    [gap] = expiry_gaps("a", recs, [Expiry("a", at(0.51), at(3.51))])
    assert gap.lease_gap == pytest.approx(-1.01, abs=1e-6)
    assert gap.lost_gap == pytest.approx(-1.01, abs=1e-6)


def test_expiry_gap_of_a_frozen_node_is_positive_and_of_a_silent_one_unknown() -> None:
    recs = [assignment(0.05, [0], 2.0), lost(9.0, [0])]  # lost printed long after (SIGSTOP)
    [gap] = expiry_gaps("a", recs, [Expiry("a", at(0.01), at(3.01))])
    assert gap.lease_gap < 0 and gap.lost_gap is not None and gap.lost_gap > 5
    [gap] = expiry_gaps("a", recs[:1], [Expiry("a", at(0.01), at(3.01))])
    assert gap.lost is None and gap.lost_gap is None
    assert expiry_gaps("a", recs, [Expiry("b", at(0), at(3))]) == []
    assert expiry_gaps("a", [error(0)], [Expiry("a", at(0), at(3))]) == []  # never held a lease


def test_check_puts_it_all_together() -> None:
    a = [assignment(0.05, [0, 1], 2.0), lease(0.55, 2.5), lost(2.5, [0, 1])]
    b = [assignment(0.05, [2], 2.0), lease(0.55, 2.5), lease(2.05, 4.0), assignment(3.6, [0, 1, 2], 5.5)]
    rs = [receipt("a", 0.01), receipt("a", 0.51), *(receipt("b", t) for t in (0.01, 0.51, 2.01, 3.55))]
    report = check({"a": a, "b": b}, rs, timeout=3, until=at(4.0))
    assert report.overlaps == [] and report.violations == []
    [gap] = report.gaps
    assert gap.node == "a" and gap.lost_gap == pytest.approx(-1.01, abs=1e-6)
    # the same run where b's grant came before the server could have let a go: both checks object
    b_early = [*b[:3], assignment(2.45, [0, 1, 2], 5.5)]
    bad = check({"a": a, "b": b_early}, rs, timeout=3)
    assert len(bad.overlaps) == 2
    assert [v.kind for v in bad.violations] == ["lease-beyond-server"]  # 5.5 > 2.01 + 3


def test_watchdog_delay_is_the_lost_records_lateness() -> None:
    recs = [assignment(0, [0], 2), lease(0.5, 2.5), lost(2.52, [0]), assignment(3, [0], 5), lost(4, [0])]
    recs[-1]["reason"] = "consumer_unknown"  # not a lease expiry: not the watchdog's doing
    [(t, late)] = watchdog_delays("a", recs)
    assert t == pytest.approx(at(2.52)) and late == pytest.approx(0.02, abs=1e-6)
    assert watchdog_delays("a", [lost(1, [])]) == []  # nothing held under a lease


# -- checkpoints: every accepted commit came from the shard's owner while its session was alive


def beat(consumer: str, mono: float, assigned: list[int], held: list[int] | None = None) -> dict[str, Any]:
    return {
        "action": "HeartBeat", "consumer": consumer, "group": "g", "mono": mono, "status": 200, "error": None,
        "assigned": {"t": assigned}, "held": {"t": held or []},
    }  # fmt: skip


def commit(
    consumer: str, mono: float, shard: int, owner: str | None, error: str | None = None
) -> dict[str, Any]:
    return {
        "action": "UpdateCheckPoint", "consumer": consumer, "group": "g", "mono": mono,
        "status": 400 if error else 200, "error": error, "assigned": None,
        "checkpoints": {"t": {str(shard): "MA=="}}, "owners": None if error else {"t": {str(shard): owner}},
    }  # fmt: skip


def test_commit_checker_accepts_the_owner_and_a_releasing_shard() -> None:
    log = [
        beat("a", 1.0, [0, 1]),
        commit("a", 1.5, 0, "a"),
        beat("a", 2.0, [0], [0, 1]),
        commit("a", 2.2, 1, "a"),
    ]
    found, accepted = commit_violations(log, timeout=3.0)
    assert (found, accepted) == ([], 2)


def test_commit_checker_flags_each_way_a_commit_can_be_wrong() -> None:
    log = [
        beat("a", 1.0, [0]),
        commit("a", 1.5, 1, "b"),  # the server says b owns 1, and a never listed it
        commit("a", 5.0, 0, "a"),  # a's session expired at 4.0
        commit("b", 1.6, 0, "b"),  # b never sent a heartbeat
        commit("a", 1.7, 1, None, error="ConsumerNotMatch"),  # refused: not a commit at all
    ]
    found, accepted = commit_violations(log, timeout=3.0)
    assert accepted == 3
    assert sorted((v.kind, v.node, v.time) for v in found) == [
        ("commit-after-expiry", "a", 5.0),
        ("commit-after-expiry", "b", 1.6),
        ("commit-not-owner", "a", 1.5),
        ("commit-unlisted", "a", 1.5),
    ]
