from shardbeat.runtime.timeline import Timeline


def test_due_entries_come_earliest_first_and_ties_keep_order() -> None:
    t: Timeline[str] = Timeline()
    assert t.push(5.0, 0, "e") is True
    assert t.push(7.0, 0, "late") is False  # not the earliest: no need to wake the scheduler
    assert t.push(1.0, 1, "a") is True
    assert t.push(1.0, 0, "b") is False  # same time: after "a"
    assert t.wait(0.5) == 0.5
    assert [(d.item, d.kind) for d in t.pop_due(5.0)] == [("a", 1), ("b", 0), ("e", 0)]
    assert t.wait(5.0) == 2.0
    assert list(t.pop_due(6.9)) == []
    assert [d.item for d in t.pop_due(7.0)] == ["late"]
    assert t.wait(8.0) is None and len(t) == 0


def test_versions_travel_with_entries() -> None:
    t: Timeline[str] = Timeline()
    t.push(1.0, 0, "g", version=1)
    t.push(2.0, 0, "g", version=2)
    assert [d.version for d in t.pop_due(3.0)] == [1, 2]
