"""The commit book, step by step with an injected clock: coalescing, interval, fencing at take time,
bounded retries, refusals, flush before release."""

from __future__ import annotations

import itertools
import math

from shardbeat.core import checkpoints as cp
from shardbeat.core.checkpoints import OK, REFUSED, RETRY, CommitBook, Position

T = "ls"
HELD = {T: frozenset({0, 1, 2})}


def test_values_coalesce_and_wait_for_the_interval() -> None:
    book = CommitBook(interval=5.0)
    assert book.due_at() is None
    book.offer({(T, 0): "a"}, now=10.0)
    book.offer({(T, 0): "b", (T, 1): "c"}, now=11.0)
    assert book.due_at() == 15.0  # interval after the first pending value
    batch, lost = book.take(HELD, now=15.0)
    assert batch is not None and batch.values == {(T, 0): "b", (T, 1): "c"} and lost == {}
    assert book.due_at() is None  # one in flight at a time, even with new values
    book.offer({(T, 0): "d"}, now=15.5)
    assert book.due_at() is None
    committed, dropped = book.settle({(T, 0): OK, (T, 1): OK}, now=15.2)
    assert committed == {(T, 0): "b", (T, 1): "c"} and dropped == {}
    assert book.due_at() == 20.5  # never sooner than an interval after the last send


def test_the_next_batch_waits_an_interval_after_the_previous_send() -> None:
    book = CommitBook(interval=5.0)
    book.offer({(T, 0): "a"}, now=0.0)
    book.take(HELD, now=5.0)
    book.settle({(T, 0): OK}, now=5.1)
    book.offer({(T, 0): "b"}, now=5.2)
    assert book.due_at() == 10.2


def test_take_drops_values_of_shards_no_longer_held() -> None:
    book = CommitBook(interval=1.0)
    book.offer({(T, 0): "a", (T, 2): "b"}, now=0.0)
    batch, lost = book.take({T: frozenset({0})}, now=1.0)
    assert batch is not None and batch.values == {(T, 0): "a"}
    assert lost == {(T, 2): "b"}
    book.settle({(T, 0): OK}, now=1.1)
    book.offer({(T, 1): "x"}, now=2.0)
    batch, lost = book.take({}, now=3.0)  # the lease ran out: nothing is sent at all
    assert batch is None and lost == {(T, 1): "x"}


def test_retryable_failures_are_bounded_and_backed_off() -> None:
    book = CommitBook(interval=5.0)
    book.offer({(T, 0): "a"}, now=0.0)
    sends = []
    now = 5.0
    for _ in range(10):
        due = book.due_at()
        if due is None:
            break
        now = max(now, due)
        batch, _ = book.take(HELD, now)
        assert batch is not None
        sends.append((now, batch.attempt))
        committed, dropped = book.settle({(T, 0): RETRY}, now + 0.01)
        assert committed == {}
    assert [attempt for _, attempt in sends] == [1, 2, 3]
    assert dropped == {(T, 0): "a"}
    gaps = [round(b[0] - a[0], 2) for a, b in itertools.pairwise(sends)]
    assert gaps == [0.21, 0.41]  # 0.2 s then 0.4 s backoff (plus the send time)
    assert book.due_at() is None and not book.pending


def test_a_refusal_drops_the_value_at_once() -> None:
    book = CommitBook(interval=1.0)
    book.offer({(T, 0): "a", (T, 1): "b"}, now=0.0)
    book.take(HELD, now=1.0)
    committed, dropped = book.settle({(T, 0): REFUSED, (T, 1): OK}, now=1.1)
    assert committed == {(T, 1): "b"} and dropped == {(T, 0): "a"}
    assert book.due_at() is None


def test_a_newer_value_supersedes_a_failed_one() -> None:
    book = CommitBook(interval=1.0)
    book.offer({(T, 0): "old"}, now=0.0)
    book.take(HELD, now=1.0)
    book.offer({(T, 0): "new"}, now=1.05)
    committed, dropped = book.settle({(T, 0): RETRY}, now=1.1)
    assert (committed, dropped) == ({}, {})
    assert book.pending == {(T, 0): "new"}


def test_flush_sends_at_once_and_release_waits_for_the_commit() -> None:
    book = CommitBook(interval=60.0)
    book.offer({(T, 1): "a"}, now=0.0)
    waiting = book.hold_release({T: frozenset({0, 1})})
    assert waiting == {T: frozenset({1})}  # shard 0 has nothing pending: released at once
    assert book.due_at() == -math.inf
    assert book.releasable() == {}
    batch, _ = book.take(HELD, now=0.1)
    assert batch is not None and batch.values == {(T, 1): "a"}
    assert book.releasable() == {}  # still in flight
    book.settle({(T, 1): RETRY}, now=0.2)
    assert book.releasable() == {}  # re-queued: the release still waits
    book.take(HELD, now=0.4)
    book.settle({(T, 1): OK}, now=0.5)
    assert book.releasable() == {T: frozenset({1})}
    assert book.releasable() == {}


def test_a_refused_commit_still_lets_the_release_happen() -> None:
    book = CommitBook(interval=60.0)
    book.offer({(T, 1): "a"}, now=0.0)
    book.hold_release({T: frozenset({1})})
    book.take(HELD, now=0.1)
    book.settle({(T, 1): REFUSED}, now=0.2)
    assert book.releasable() == {T: frozenset({1})}


def test_drop_on_loss_forgets_pending_and_waiting_releases() -> None:
    book = CommitBook(interval=60.0)
    book.offer({(T, 1): "a", (T, 2): "b"}, now=0.0)
    book.hold_release({T: frozenset({1})})
    assert book.drop({T: frozenset({2})}) == {(T, 1): "a"}
    assert book.pending == {(T, 2): "b"} and book.waiting_release == {}
    assert book.drop({}) == {(T, 2): "b"}
    assert book.due_at() is None


def test_record_shapes() -> None:
    assert cp.values_json({(T, 10): "x", (T, 2): 3, ("a", 1): 0}) == {"a": {"1": 0}, T: {"2": 3, "10": "x"}}
    positions = {(T, 0): Position("MA==", "committed"), (T, 1): Position(5, cp.start_from(1.0e9))}
    assert cp.positions_json(positions) == {
        T: {"0": {"checkpoint": "MA==", "from": "committed"}, "1": {"checkpoint": 5, "from": "time"}}
    }
    assert cp.start_from("begin") == "begin" and cp.start_from("end") == "end"
