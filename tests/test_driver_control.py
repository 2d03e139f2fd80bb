"""GroupDriver step tests: on-demand beats (coalesced, spaced, capped across groups), the server's clock
(Date -> corrected signing time, one warning), `status` and snapshot figures, stopping (finish,
abandon), credential failures, and recovery after an internal error. Fake clock (tests/driver_kit.py)."""

from __future__ import annotations

import logging
from email.utils import parsedate_to_datetime

import pytest

from driver_kit import LOGSTORE, MONO0, FakeClock, Kit, claim_of, group
from shardbeat.core.on_demand import OnDemandBudget
from shardbeat.core.schedule import Retry
from shardbeat.core.wire import Credentials, ProviderError

A = {LOGSTORE: [0, 1, 2]}


def joined(**over: object) -> Kit:
    kit = Kit(group("sls", **over))
    kit.bootstrap()
    kit.beat(A)
    assert kit.events() == ["assignment"]
    return kit


# -- on-demand beats -----------------------------------------------------------------------------


def test_an_on_demand_beat_before_bootstrap_is_ignored() -> None:
    kit = Kit(group("sls"))
    kit.poll()
    kit.driver.ask_beat(kit.clock.mono, None)
    assert kit.driver.on_demand is False  # the bootstrap's own first beat comes right after it


def test_an_on_demand_beat_is_spaced_from_the_last_send() -> None:
    kit = joined(heartbeat_interval=2, timeout=10)
    last_sent = kit.driver.last_sent
    assert last_sent is not None
    kit.driver.ask_beat(kit.clock.mono, None)
    assert kit.driver.next_due() == pytest.approx(last_sent + 0.5)  # a quarter of the interval
    kit.poll_due()
    assert kit.only().action == "HeartBeat"


def test_an_on_demand_beat_never_delays_one_already_due_sooner() -> None:
    kit = joined()
    kit.poll_due()
    kit.answer(kit.server.transient())  # a fast retry is due in 0.1-0.2 s
    retry = kit.driver.next_due()
    budget = OnDemandBudget(rate=10)
    kit.driver.ask_beat(kit.clock.mono, budget)  # spacing would say last send + 0.25 s
    assert kit.driver.next_due() == retry
    assert budget.slot(kit.clock.mono) == kit.clock.mono  # and it took no slot of the process budget


def test_on_demand_beats_asked_while_one_is_in_flight_share_one_beat() -> None:
    kit = joined()
    kit.poll_due()
    for _ in range(5):
        kit.driver.ask_beat(kit.clock.mono, None)
    kit.answer(kit.server.assigned(A), after=0.1)
    sent = kit.driver.last_sent
    assert sent is not None
    assert kit.driver.next_due() == pytest.approx(sent + 0.25)  # one owed beat, spaced
    kit.poll_due()
    kit.answer(kit.server.assigned(A))
    assert kit.driver.next_due() == pytest.approx(sent + 1)  # then the grid again: the five are spent


def test_the_process_budget_spaces_on_demand_beats_across_groups() -> None:
    clock = FakeClock()
    config = {"heartbeat_interval": 4, "timeout": 20}
    kits = [Kit(group("sls", consumer=f"c{i}", **config), clock=clock, index=i) for i in range(3)]
    for kit in kits:
        kit.bootstrap()
        kit.beat(A)
    clock.to(MONO0 + 2)  # past each group's spacing (1 s), before its next tick (4 s)
    budget = OnDemandBudget(rate=10)
    for kit in kits:
        kit.driver.ask_beat(clock.mono, budget)
    dues = [kit.driver.next_due() for kit in kits]
    assert dues == pytest.approx([clock.mono, clock.mono + 0.1, clock.mono + 0.2])


# -- the server's clock --------------------------------------------------------------------------


def test_a_skewed_server_date_corrects_the_signing_time_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kit = Kit(group("sls"))
    kit.poll()
    server_wall = kit.clock.now().wall + 3600  # this host is an hour behind
    with caplog.at_level(logging.WARNING):
        kit.answer(kit.server.groups(10), server_date=float(int(server_wall)))
    assert "clock is 3600s behind the server's" in caplog.text
    assert kit.driver.server_clock.offset == pytest.approx(3600, abs=1)
    kit.poll_due()
    date = dict(kit.only().send.request.headers)["Date"]
    signed = parsedate_to_datetime(date).timestamp()
    assert signed == pytest.approx(kit.clock.now().wall + 3600, abs=1.5)  # signed with the server's time
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        kit.answer(kit.server.assigned(A), server_date=float(int(kit.clock.now().wall + 3600)))
    assert "behind" not in caplog.text  # once, not every answer
    status = kit.driver.status_record(kit.clock.now(), 0)
    assert status["clock_offset_s"] == pytest.approx(3600, abs=1)


def test_a_small_skew_is_left_alone() -> None:
    kit = Kit(group("sls"))
    kit.poll()
    kit.answer(kit.server.groups(10), server_date=float(int(kit.clock.now().wall + 1)))
    assert kit.driver.server_clock.offset == 0.0


def test_an_expired_signature_is_resent_with_the_servers_time() -> None:
    kit = joined()
    kit.poll_due()
    skewed = kit.server.error(400, "RequestTimeExpired", "request time expired")
    kit.answer(skewed, server_date=float(int(kit.clock.now().wall - 1200)))  # this host is 20 min ahead
    kit.poll_due()
    date = dict(kit.only().send.request.headers)["Date"]
    assert parsedate_to_datetime(date).timestamp() == pytest.approx(kit.clock.now().wall - 1200, abs=1.5)


# -- figures -------------------------------------------------------------------------------------


def test_status_record_and_snapshot_figures() -> None:
    kit = joined()  # beat 1: latency 10 ms
    kit.poll_due()
    kit.answer(kit.server.assigned(A), after=0.03)  # beat 2: 30 ms
    kit.poll_due()
    kit.answer(kit.server.transient())  # beat 3: failed
    lease = kit.driver.membership.lease.expires_at
    assert lease is not None
    at = kit.clock.now()
    rec = kit.driver.status_record(at, output_dropped=2)
    assert rec["event"] == "status" and rec["epoch"] == 1
    assert rec["assigned"] == A and rec["releasing"] == {}
    assert rec["counters"] == {"beats": 3, "failures": 1, "changes": 1, "lost": 0, "output_dropped": 2}
    assert rec["last_error"] == "InternalServerError"
    assert rec["lease_remaining_ms"] == round((lease - at.mono) * 1000)
    assert rec["latency_ms"]["count"] == 2
    assert 0 < rec["latency_ms"]["p50"] <= rec["latency_ms"]["p99"]
    snap = kit.driver.snapshot(at.mono)
    assert (snap.assigned, snap.releasing, snap.beats, snap.failures, snap.changes) == (3, 0, 3, 1, 1)
    assert snap.lease_remaining == pytest.approx(lease - at.mono)
    assert snap.scope == "scope" and snap.group == "demo-group" and snap.last_error == "InternalServerError"
    kit.poll_due()
    kit.answer(kit.server.assigned(A))
    assert kit.driver.status_record(kit.clock.now(), 0)["last_error"] is None  # cleared by a success


def test_status_after_a_loss_shows_no_lease() -> None:
    kit = joined()
    end = kit.driver.membership.lease.expires_at
    assert end is not None
    kit.poll_due()
    kit.poll(end)
    rec = kit.driver.status_record(kit.clock.now(), 0)
    assert rec["lease_expires"] is None and rec["lease_remaining_ms"] is None
    assert rec["counters"]["lost"] == 1 and rec["assigned"] == {}
    assert kit.driver.snapshot(kit.clock.mono).lease_remaining is None


# -- stopping ------------------------------------------------------------------------------------


def test_finish_writes_lost_then_stopped_and_nothing_after() -> None:
    kit = joined()
    kit.poll_due()  # a beat in flight at the stop
    kit.driver.finish(kit.clock.now())
    kit.collect()
    lost, stopped = kit.new_records()
    assert lost["event"] == "lost" and lost["reason"] == "stopped" and lost["lost"] == A
    assert stopped["event"] == "stopped" and stopped["epoch"] == lost["epoch"]
    kit.answer(kit.server.assigned(A))  # the late answer changes nothing
    assert kit.events() == [] and kit.driver.membership.claim() == {}
    assert kit.driver.next_due() == float("inf")


def test_finish_before_joining_writes_stopped_alone() -> None:
    kit = Kit(group("sls"))
    kit.driver.finish(kit.clock.now())
    kit.collect()
    assert kit.events() == ["stopped"]


def test_abandon_drops_everything_silently() -> None:
    kit = joined()
    kit.poll_due()
    kit.driver.emit({"event": "pending"})  # a record the shell had not taken yet
    kit.driver.abandon()
    kit.collect()
    assert kit.events() == []  # no one to tell: nothing at all
    assert kit.driver.membership.claim() == {}
    kit.answer(kit.server.assigned(A))
    assert kit.events() == [] and kit.driver.membership.claim() == {}
    kit.poll(kit.clock.mono + 5)
    assert kit.pending == []  # and no beat ever claims again


# -- credentials ---------------------------------------------------------------------------------


def test_a_credential_source_failure_is_an_error_record() -> None:
    kit = joined()
    kit.driver.credential_failure(kit.clock.now(), "STS said no", 30)
    kit.collect()
    (rec,) = kit.new_records()
    assert rec["source"] == "credentials" and rec["error"]["code"] == "CredentialRefreshFailed"
    assert rec["retry_in_ms"] == 30000


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_a_rejected_key_makes_the_source_look_for_a_rotated_one(provider: str) -> None:
    kit = Kit(group(provider))
    kit.bootstrap()
    kit.poll_due()
    kit.answer(kit.server.bad_key())
    assert kit.keys.refreshes == 1
    kit.poll_due()
    kit.answer(kit.server.transient())
    assert kit.keys.refreshes == 1  # a passing fault is no reason to re-read the key


# -- recovery ------------------------------------------------------------------------------------


def test_a_beat_that_hit_an_internal_error_frees_its_slot() -> None:
    kit = joined()
    kit.poll_due()
    kit.answer()  # an Answer with neither response nor failure: the call fails inside (a bug)
    assert kit.internal_errors == 1
    assert kit.driver.in_flight is False
    assert kit.driver.next_due() == pytest.approx(kit.clock.mono + 1)  # an interval later, not never
    kit.poll_due()
    kit.answer(kit.server.assigned(A))
    assert kit.events() == ["lease"]


def test_a_failure_answer_reaches_the_record_as_the_shell_gave_it() -> None:
    kit = joined()
    kit.poll_due()
    kit.answer(failure=ProviderError("ConnectionRefused", "127.0.0.1:1: refused", retry=Retry.FAST))
    (rec,) = kit.new_records()
    assert rec["error"] == {
        "code": "ConnectionRefused",
        "message": "127.0.0.1:1: refused",
        "status": None,
        "request_id": None,
    }
    kit.poll_due()
    assert claim_of(kit.only().send.request) == A  # a failure keeps the claim while the lease lasts


def test_every_beat_signs_with_the_sources_latest_key() -> None:
    kit = joined()
    kit.keys.key = Credentials("akid-rotated", "new-secret")
    kit.poll_due()
    assert dict(kit.only().send.request.headers)["Authorization"].startswith("LOG akid-rotated:")


def test_a_reload_after_a_failed_bootstrap_retries_it_promptly() -> None:
    kit = Kit(group("sls"))
    kit.poll()
    kit.answer(kit.server.bad_key())
    assert kit.events() == ["error"]
    assert kit.driver.next_due() >= kit.clock.mono + 2.5
    kit.driver.ask_beat(kit.clock.mono, None)  # what Runner.beat_now does on reload
    assert kit.driver.next_due() <= kit.clock.mono + 1.0


def test_owed_on_demand_beats_keep_to_the_process_budget() -> None:
    clock = FakeClock()
    config = {"heartbeat_interval": 4, "timeout": 20}
    kits = [Kit(group("sls", consumer=f"c{i}", **config), clock=clock, index=i) for i in range(3)]
    for kit in kits:
        kit.bootstrap()
        kit.beat(A)
    clock.to(MONO0 + 4)
    for kit in kits:
        kit.poll()  # every group has a beat in flight when the op comes
    budget = OnDemandBudget(rate=10)
    for kit in kits:
        kit.driver.ask_beat(clock.mono, budget)
    for kit in kits:
        kit.answer(kit.server.assigned(A), after=0)
    dues = sorted(kit.driver.next_due() for kit in kits)
    assert dues[1] - dues[0] >= 0.1 - 1e-9 and dues[2] - dues[1] >= 0.1 - 1e-9
