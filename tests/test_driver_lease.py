"""GroupDriver step tests: join, renew, the fixed-rate grid, failure backoff, and the lease's end
(lost first, at exactly the lease end; a late answer; an empty claim after a loss). Fake clock, real
providers (tests/driver_kit.py)."""

from __future__ import annotations

import pytest

from driver_kit import LOGSTORE, MONO0, TOPIC_A, TOPIC_B, Kit, claim_of, group, rfc
from shardbeat.core.group_bootstrap import KEY_WAIT_STEP
from shardbeat.core.schedule import Retry
from shardbeat.core.wire import ProviderError

A = {LOGSTORE: [0, 1, 2]}


def joined(provider: str = "sls", **over: object) -> tuple[Kit, float]:
    """A group that joined with A (interval 1 s, timeout 10 s, lease 9 s); returns the send time."""
    kit = Kit(group(provider, **over))
    kit.bootstrap()
    kit.poll_due()
    sent = kit.clock.mono
    kit.answer(kit.server.assigned(A if provider == "sls" else {TOPIC_A: [1, 2], TOPIC_B: [3]}))
    assert kit.events() == ["assignment"]
    return kit, sent


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_join_writes_an_assignment_leased_from_the_send_time(provider: str) -> None:
    kit = Kit(group(provider))
    kit.bootstrap()
    kit.poll_due()
    assert claim_of(kit.only().send.request) == {}  # a fresh consumer claims nothing
    sent = kit.clock.mono
    assigned = {LOGSTORE: [0, 1, 2]} if provider == "sls" else {TOPIC_A: [1, 2], TOPIC_B: [3]}
    kit.answer(kit.server.assigned(assigned), after=0.3)
    (rec,) = kit.new_records()
    assert rec["event"] == "assignment" and rec["epoch"] == 1
    assert rec["assigned"] == rec["added"] == assigned and rec["revoked"] == {}
    assert rec["lease_expires"] == rfc(sent + 10 - 1)  # the send time, never the receipt
    assert "start" not in rec  # no checkpoints configured
    kit.poll_due()
    assert claim_of(kit.only().send.request) == assigned  # the next beat lists what is held


def test_a_renewal_is_a_lease_record_with_its_latency() -> None:
    kit, _ = joined()
    kit.poll_due()
    assert kit.clock.mono == pytest.approx(MONO0 + 1)  # the grid: one interval after tick 0
    sent = kit.clock.mono
    kit.answer(kit.server.assigned(A), after=0.25)
    (rec,) = kit.new_records()
    assert rec["event"] == "lease" and rec["epoch"] == 1
    assert rec["latency_ms"] == pytest.approx(250, abs=0.01)
    assert rec["lease_expires"] == rfc(sent + 9)


def test_beats_stay_on_the_fixed_rate_grid_however_late_each_answer() -> None:
    kit, _ = joined()
    for tick in (1, 2, 3):
        kit.poll_due()
        assert kit.clock.mono == pytest.approx(MONO0 + tick)
        kit.answer(kit.server.assigned(A), after=0.7)  # slow answers never push the grid
    assert kit.driver.next_due() == pytest.approx(MONO0 + 4)


def test_a_frozen_process_skips_the_ticks_it_missed_instead_of_bursting() -> None:
    kit, _ = joined()
    kit.poll(MONO0 + 3.3)  # due at +1, but the process only now runs
    kit.answer(kit.server.assigned(A))
    assert kit.driver.next_due() == pytest.approx(MONO0 + 4)


def test_a_call_never_outlives_the_next_tick_or_the_lease() -> None:
    kit, _ = joined()
    kit.poll_due()
    send = kit.only().send
    assert send.deadline == pytest.approx(kit.clock.mono + 0.9) and send.budget == pytest.approx(0.9)


def test_fast_failures_back_off_within_the_interval() -> None:
    kit, _ = joined()
    kit.poll_due()
    delays = []
    for _ in range(3):
        kit.answer(kit.server.transient())
        (rec,) = kit.new_records()
        assert rec["event"] == "error" and rec["source"] == "heartbeat"
        assert rec["error"]["code"] == "InternalServerError" and rec["error"]["status"] == 500
        assert rec["error"]["request_id"] == "req-err"
        delays.append(kit.driver.next_due() - kit.clock.mono)
        assert rec["retry_in_ms"] == round(delays[-1] * 1000)
        kit.poll_due()
    assert 0.1 <= delays[0] <= 0.2 and 0.2 <= delays[1] <= 0.4  # doubling, with jitter
    assert all(d <= 1.0 for d in delays)  # never past the next tick


def test_a_slow_failure_waits_for_an_operator_at_least_a_tick() -> None:
    kit, _ = joined()
    kit.poll_due()
    kit.answer(kit.server.bad_key())
    (rec,) = kit.new_records()
    assert rec["error"]["code"] == "SignatureNotMatch"
    assert 2500 <= rec["retry_in_ms"] <= 5000
    assert kit.keys.refreshes == 1  # credentials_rejected: the rotated key is looked for


def test_a_stale_signature_time_is_resent_at_once_then_backs_off() -> None:
    kit, _ = joined()
    kit.poll_due()
    expired = kit.server.error(400, "RequestTimeExpired", "request time expired")
    kit.answer(expired)
    assert kit.new_records()[0]["retry_in_ms"] == 0  # RESIGN: re-signed and sent now
    assert kit.driver.next_due() == kit.clock.mono
    kit.poll_due()
    kit.answer(expired)
    assert kit.new_records()[0]["retry_in_ms"] > 0  # the second in a row is not fixed by re-signing


def test_an_unknown_consumer_loses_everything_and_rejoins_at_once_with_an_empty_claim() -> None:
    kit, _ = joined()
    kit.poll_due()
    kit.answer(kit.server.error(400, "NotExistConsumerWithBody", "consumer not exist"))
    lost, error = kit.new_records()
    assert lost["event"] == "lost" and lost["reason"] == "consumer_unknown" and lost["lost"] == A
    assert error["event"] == "error" and error["retry_in_ms"] == 0
    kit.poll_due()
    assert claim_of(kit.only().send.request) == {}  # an empty body registers the consumer afresh
    kit.answer(kit.server.assigned(A))
    (rec,) = kit.new_records()
    assert rec["event"] == "assignment" and rec["added"] == A and rec["epoch"] == 3


def test_lost_comes_at_exactly_the_lease_end_while_a_beat_hangs() -> None:
    kit, sent = joined()
    kit.poll_due()  # this beat never gets an answer
    end = sent + 9
    assert kit.driver.next_due() == end  # the lease's end is the driver's next due time
    kit.poll(end - 0.001)
    assert kit.events() == []
    kit.poll(end)
    (rec,) = kit.new_records()
    assert rec["event"] == "lost" and rec["reason"] == "lease_expired"
    assert rec["lost"] == A and rec["epoch"] == 2
    assert rec["time"] == rfc(end)
    assert kit.driver.membership.claim() == {}


def test_lost_is_written_before_anything_a_late_answer_says() -> None:
    kit, sent = joined()
    kit.poll(MONO0 + 1)
    late_sent = kit.clock.mono
    kit.clock.to(sent + 9.5)  # past the old lease, nobody polled: the answer is the first to notice
    kit.answer(kit.server.assigned(A), after=0)
    lost, again = kit.new_records()
    assert lost["event"] == "lost" and lost["reason"] == "lease_expired"
    assert again["event"] == "assignment" and again["added"] == A and again["epoch"] == 3
    assert again["lease_expires"] == rfc(late_sent + 9)


def test_an_answer_so_late_its_own_lease_ran_out_is_ignored() -> None:
    kit, _ = joined()
    kit.poll(MONO0 + 1)
    kit.clock.to(MONO0 + 1 + 9 + 0.5)  # the lease this answer would grant is already over
    kit.answer(kit.server.assigned(A), after=0)
    (lost,) = kit.new_records()
    assert lost["event"] == "lost"
    assert kit.driver.membership.claim() == {} and not kit.driver.membership.lease.valid(kit.clock.mono)
    kit.poll_due()
    assert claim_of(kit.only().send.request) == {}  # empty claim after a loss


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_the_claim_after_a_loss_is_empty(provider: str) -> None:
    kit, sent = joined(provider)
    kit.poll_due()
    kit.answer(failure=ProviderError("Timeout", "no answer", retry=Retry.FAST))
    kit.poll(sent + 9)  # lease over; the retry due by then goes in the same poll, after the loss
    assert kit.events() == ["error", "lost"]
    request = kit.only().send.request
    assert claim_of(request) == {}
    if provider == "cls":  # every configured topic listed, with no partitions
        infos = kit.only().body["TopicPartitionsInfo"]
        assert infos == [{"TopicID": TOPIC_A, "Partitions": []}, {"TopicID": TOPIC_B, "Partitions": []}]
    else:
        assert request.body == b"[]"


def test_a_failed_beat_keeps_the_lease_it_had() -> None:
    kit, sent = joined()
    kit.poll_due()
    kit.answer(kit.server.transient())
    assert kit.driver.membership.lease.expires_at == sent + 9  # failures never extend, never cut it
    assert kit.driver.membership.claim() == {LOGSTORE: frozenset({0, 1, 2})}


def test_no_key_at_heartbeat_time_is_a_heartbeat_error_once_the_call_budget_is_spent() -> None:
    kit, _ = joined()
    kit.keys.missing = True  # the last key expired and no refresh arrives
    kit.poll_due()
    started = kit.clock.mono
    for _ in range(100):
        assert kit.pending == []
        if kit.records[-1]["event"] == "error":
            break
        kit.poll_due()
    # silent while a refresh could still come within the call's budget (0.9 x interval), then an error
    assert 0.9 - 1e-6 <= kit.clock.mono - started < 0.9 + KEY_WAIT_STEP
    rec = kit.records[-1]
    assert rec["source"] == "heartbeat" and rec["error"]["code"] == "CredentialsUnavailable"
    assert kit.driver.next_due() > kit.clock.mono


def test_a_beat_waits_silently_for_a_key_being_refreshed() -> None:
    kit, _ = joined()
    before = len(kit.records)
    kit.keys.missing = True  # the last key expired; the refresher's fetch is on its way
    kit.poll_due()
    kit.poll_due()
    assert kit.pending == [] and len(kit.records) == before
    kit.keys.missing = False
    kit.poll_due()
    assert kit.only().action == "HeartBeat"
    kit.answer(kit.server.assigned(A))
    assert [r["event"] for r in kit.records[before:]] == ["lease"]


def test_lost_comes_before_the_error_of_a_failure_answered_past_the_lease() -> None:
    kit, sent = joined()
    kit.poll(MONO0 + 1)
    kit.clock.to(sent + 9.2)  # nobody polled at the lease end: the failure is the first to notice
    kit.answer(kit.server.transient(), after=0)
    lost, error = kit.new_records()
    assert lost["event"] == "lost" and lost["reason"] == "lease_expired"
    assert error["event"] == "error"
