"""The refresh schedule of temporary keys (core.credential_refresh): pure, times are parameters."""

from __future__ import annotations

import itertools

import pytest

from shardbeat.core.credential_refresh import (
    DEFAULT_POLICY,
    REFRESH_BEFORE,
    Held,
    RefreshPolicy,
    parse_expiration,
)


def test_refresh_at_two_thirds_for_short_keys_and_three_minutes_before_for_long_ones() -> None:
    # 15 min key: 2/3 is 10 min, 3 min before is 12 min -> 10 min (the earlier).
    assert DEFAULT_POLICY.refresh_due(1000.0, 1000.0 + 900) == pytest.approx(1000.0 + 600)
    # 6 h key (ECS): 2/3 is 4 h, 3 min before is 5 h 57 -> 4 h.
    assert DEFAULT_POLICY.refresh_due(0.0, 21600.0) == pytest.approx(14400.0)
    # 4 min key: 2/3 is 160 s, 3 min before is 60 s -> 60 s.
    assert DEFAULT_POLICY.refresh_due(0.0, 240.0) == pytest.approx(240.0 - REFRESH_BEFORE)
    # Already (nearly) dead: at once.
    assert DEFAULT_POLICY.refresh_due(50.0, 40.0) == 50.0


def test_fetched_key_is_used_until_the_safety_margin_before_its_end() -> None:
    held = Held[str]().fetched("k1", now=100.0, expires=1000.0)
    assert held.usable(100.0) == "k1"
    assert held.usable(1000.0 - DEFAULT_POLICY.safety - 0.001) == "k1"
    assert held.usable(1000.0 - DEFAULT_POLICY.safety) is None
    assert held.next_attempt == pytest.approx(100.0 + 600.0)


def test_a_key_without_expiry_is_never_refreshed_on_a_timer() -> None:
    held = Held[str]().fetched("k", now=5.0, expires=None)
    assert held.usable(1e12) == "k"
    assert held.next_attempt == float("inf")
    assert held.refresh_now(7.0).next_attempt == float("inf")  # younger than min_spacing: a burst
    assert held.refresh_now(5.0 + DEFAULT_POLICY.min_spacing).next_attempt == 5.0 + DEFAULT_POLICY.min_spacing


def test_failures_keep_the_old_key_and_back_off_within_its_remaining_life() -> None:
    held = Held[str]().fetched("old", now=0.0, expires=900.0)
    due = held.next_attempt  # 600
    failed = held.failed(due, "metadata: HTTP 500")
    assert failed.key == "old" and failed.usable(due) == "old"
    assert failed.failures == 1 and failed.last_error == "metadata: HTTP 500"
    assert failed.next_attempt == pytest.approx(due + 1.0)
    times = [due]
    for _ in range(20):
        failed = failed.failed(failed.next_attempt, "again")
        times.append(failed.next_attempt)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= DEFAULT_POLICY.retry_max
    # Many attempts fit before the key ends: at least 8 before t=900.
    assert sum(1 for t in times if t < 900.0) >= 8
    # A success clears the streak.
    fresh = failed.fetched("new", now=880.0, expires=1780.0)
    assert fresh.failures == 0 and fresh.last_error is None and fresh.usable(881.0) == "new"


def test_failures_without_any_key_back_off_up_to_the_cap() -> None:
    held: Held[str] = Held()
    delays = []
    now = 0.0
    for _ in range(10):
        held = held.failed(now, "down")
        delays.append(held.next_attempt - now)
        now = held.next_attempt
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert delays[-1] == DEFAULT_POLICY.retry_max


def test_a_server_handing_out_nearly_dead_keys_cannot_cause_a_tight_loop() -> None:
    held = Held[str]().fetched("k", now=0.0, expires=2.0)
    assert held.next_attempt >= DEFAULT_POLICY.retry_first


def test_policy_is_injectable_for_short_test_keys() -> None:
    policy = RefreshPolicy(before=1.0, safety=0.5, retry_first=0.1)
    held = Held[str](policy=policy).fetched("k", now=0.0, expires=3.0)
    assert held.next_attempt == pytest.approx(2.0)
    assert held.usable(2.4) == "k" and held.usable(2.5) is None


def test_parse_expiration_is_utc_and_strict() -> None:
    assert parse_expiration("1970-01-01T01:00:00Z") == 3600.0
    for bad in ("2026-11-30 21:00:00", "2026-11-30T21:00:00+08:00", "", None, 17):
        with pytest.raises(ValueError):
            parse_expiration(bad)
