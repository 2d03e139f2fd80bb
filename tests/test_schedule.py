import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shardbeat.core.schedule import Backoff, Pacer, Retry, Schedule, call_budget


def test_next_tick_is_strictly_after_now_on_the_grid() -> None:
    s = Schedule(interval=2.0, start=10.0)
    assert s.next_tick(5.0) == 10.0
    assert s.next_tick(10.0) == 12.0
    assert s.next_tick(11.999) == 12.0
    assert s.next_tick(12.0) == 14.0


def test_missed_ticks_are_skipped_not_bursted() -> None:
    s = Schedule(interval=1.0, start=0.0)
    # A call (or a frozen process) that overran seven ticks resumes on the grid, once.
    assert s.next_tick(7.3) == 8.0


@given(
    interval=st.floats(min_value=0.01, max_value=100),
    start=st.floats(min_value=0, max_value=1e6),
    offset=st.floats(min_value=0, max_value=1e6),
)
def test_next_tick_properties(interval: float, start: float, offset: float) -> None:
    s = Schedule(interval, start)
    now = start + offset
    tick = s.next_tick(now)
    assert tick > now
    assert tick - now <= interval * (1 + 1e-9) + 1e-6
    k = round((tick - start) / interval)
    assert tick == pytest.approx(start + k * interval, rel=1e-9, abs=1e-6)


def test_one_hour_simulated_has_zero_drift() -> None:
    """Every beat of a simulated hour fires on the grid start + k*interval, whatever each call costs."""
    rng = random.Random(7)
    interval, start = 1.5, 1000.0
    pacer = Pacer.create(interval, start, rng)
    due, fired = start, []
    while due < start + 3600:
        fired.append(due)
        latency = rng.choice([0.0005, 0.002, 0.05, 0.3, 1.2])  # some calls take most of an interval
        received = due + latency
        due = pacer.after_success(received)
    for t in fired:
        k = (t - start) / interval
        assert abs(k - round(k)) < 1e-6
    assert len(fired) == 3600 / interval
    assert fired[-1] == pytest.approx(start + 3600 - interval)


def test_one_hour_with_failures_returns_to_the_grid() -> None:
    rng = random.Random(11)
    interval, start = 2.0, 0.0
    pacer = Pacer.create(interval, start, rng)
    due = start
    on_grid_after_success = []
    while due < 3600:
        received = due + 0.01
        if rng.random() < 0.2:
            nxt = pacer.after_failure(received, Retry.FAST)
            assert received < nxt <= pacer.schedule.next_tick(received)
        else:
            nxt = pacer.after_success(received)
            on_grid_after_success.append(nxt)
        due = nxt
    for t in on_grid_after_success:
        assert abs(t / interval - round(t / interval)) < 1e-9


def test_fast_retries_are_quick_jittered_and_capped() -> None:
    b = Backoff(initial=0.2, maximum=5.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(10)]
    assert 0.1 <= delays[0] <= 0.2
    assert all(d <= 5.0 for d in delays)
    assert delays[-1] >= 2.5  # grew to the cap
    b.reset()
    assert b.next_delay() <= 0.2


def test_jitter_differs_between_attempts() -> None:
    b = Backoff(initial=1.0, maximum=1.0, rng=random.Random(3))
    assert len({round(b.next_delay(), 6) for _ in range(5)}) > 1


def test_failure_policies() -> None:
    pacer = Pacer.create(interval=10.0, start=0.0, rng=random.Random(5))
    assert pacer.after_failure(1.0, Retry.REJOIN) == 1.0  # fixed locally: go again at once
    second = pacer.after_failure(1.0, Retry.REJOIN)
    assert 1.0 < second <= 10.0  # not a tight loop when it persists
    slow = pacer.after_failure(2.0, Retry.SLOW)
    assert slow >= 10.0
    pacer.after_success(3.0)
    assert pacer.streak == 0
    assert pacer.after_failure(4.0, Retry.RESIGN) == 4.0


def test_call_budget_stays_inside_interval_and_lease() -> None:
    assert call_budget(10.0, None) == pytest.approx(9.0)
    assert call_budget(10.0, 3.0) == 3.0
    assert call_budget(10.0, 0.0) == 0.05
