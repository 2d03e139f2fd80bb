"""GroupDriver step tests: the first beat is a bootstrap (read the group; create it or set its timeout
when asked), the lease follows the server's timeout, and the interval is fitted to it. Both providers,
real request builders and parsers, a fake clock (tests/driver_kit.py)."""

from __future__ import annotations

import logging

import pytest

from driver_kit import KEYS, MONO0, Keys, Kit, group, rfc
from shardbeat.core.group_bootstrap import FIRST_KEY_WAIT, KEY_WAIT_STEP
from shardbeat.core.schedule import Retry
from shardbeat.core.wire import ProviderError

PROVIDERS = ["sls", "cls"]
DESCRIBE = {"sls": "ListConsumerGroup", "cls": "DescribeConsumerGroups"}
CREATE = {"sls": "CreateConsumerGroup", "cls": "CreateConsumerGroup"}
UPDATE = {"sls": "UpdateConsumerGroup", "cls": "ModifyConsumerGroup"}
BEAT = {"sls": "HeartBeat", "cls": "SendConsumerHeartbeat"}


def timeout_sent(provider: str, body: dict[str, object]) -> object:
    return body["timeout" if provider == "sls" else "Timeout"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_first_beat_reads_the_group_then_heartbeats_at_once(provider: str) -> None:
    kit = Kit(group(provider))
    assert kit.driver.next_due() == MONO0
    kit.poll()
    assert kit.only().action == DESCRIBE[provider]
    assert kit.driver.next_due() == float("inf")  # one call at a time: nothing else is due
    kit.answer(kit.server.groups(10), after=0.05)
    assert kit.events() == []  # a found group is no record
    assert kit.driver.next_due() == pytest.approx(MONO0 + 0.05)  # the first heartbeat: right away
    kit.poll_due()
    assert kit.only().action == BEAT[provider]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_missing_group_without_create_group_is_a_slow_retried_bootstrap_error(provider: str) -> None:
    kit = Kit(group(provider))
    kit.poll()
    kit.answer(kit.server.groups(None))
    (rec,) = kit.new_records()
    assert rec["event"] == "error" and rec["source"] == "bootstrap"
    assert rec["error"]["code"] == "ConsumerGroupNotExist"
    assert "create_group: true" in rec["error"]["message"]
    # SLOW: half to all of max(interval, 5 s), and never before the next tick
    assert 2500 <= rec["retry_in_ms"] <= 5000
    assert kit.driver.next_due() == pytest.approx(kit.clock.mono + rec["retry_in_ms"] / 1000, abs=1e-3)
    assert kit.pending == [] and not kit.driver.bootstrapped
    kit.poll_due()
    assert kit.only().action == DESCRIBE[provider]  # it reads the group again, never heartbeats blind


@pytest.mark.parametrize("provider", PROVIDERS)
def test_create_group_creates_it_with_the_configured_timeout_rounded_up(provider: str) -> None:
    kit = Kit(group(provider, create_group=True, timeout=4.5))
    kit.poll()
    kit.answer(kit.server.groups(None))
    create = kit.only()
    assert create.action == CREATE[provider]
    assert timeout_sent(provider, create.body) == 5  # whole seconds, never below the lease
    kit.answer(kit.server.ok())
    assert kit.events() == [] and kit.driver.bootstrapped
    kit.poll_due()
    sent = kit.clock.mono
    kit.answer(kit.server.assigned({kit.server.topic: [1]}))
    (rec,) = kit.new_records()
    assert rec["lease_expires"] == rfc(sent + 5 - 1)  # the group's 5 s, less the default 1 s margin


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_group_created_by_another_node_meanwhile_is_read_again(provider: str) -> None:
    kit = Kit(group(provider, create_group=True))
    kit.poll()
    kit.answer(kit.server.groups(None))
    assert kit.only().action == CREATE[provider]
    kit.answer(kit.server.already_exists())
    assert kit.only().action == DESCRIBE[provider]  # not an error: read what the winner made
    kit.answer(kit.server.groups(10))
    assert kit.events() == [] and kit.driver.bootstrapped
    assert kit.driver.timeout == 10


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_differing_server_timeout_is_leased_by_without_update_group(provider: str) -> None:
    kit = Kit(group(provider, timeout=10))
    kit.poll()
    kit.answer(kit.server.groups(3))
    assert kit.pending == []  # no update sent: update_group is off
    kit.poll_due()
    assert kit.only().action == BEAT[provider]
    sent = kit.clock.mono
    kit.answer(kit.server.assigned({kit.server.topic: [1]}))
    (rec,) = kit.new_records()
    assert rec["lease_expires"] == rfc(sent + 3 - 1)  # the server's 3 s, not the configured 10 s
    assert kit.driver.release_grace == 3  # the ack grace follows the real timeout too


@pytest.mark.parametrize("provider", PROVIDERS)
def test_update_group_sets_the_server_timeout_to_the_configured_one(provider: str) -> None:
    kit = Kit(group(provider, timeout=10, update_group=True))
    kit.poll()
    kit.answer(kit.server.groups(3))
    update = kit.only()
    assert update.action == UPDATE[provider]
    assert timeout_sent(provider, update.body) == 10
    if provider == "cls":  # the timeout alone: sending our topics would drop the group's others
        assert "Topics" not in update.body
    kit.answer(kit.server.ok())
    kit.poll_due()
    sent = kit.clock.mono
    kit.answer(kit.server.assigned({kit.server.topic: [1]}))
    (rec,) = kit.new_records()
    assert rec["lease_expires"] == rfc(sent + 10 - 1)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refused_group_read_heartbeats_with_the_configured_timeout(
    provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    kit = Kit(group(provider, timeout=10))
    kit.poll()
    with caplog.at_level(logging.WARNING):
        kit.answer(kit.server.refused_read())
    assert kit.events() == []  # a RAM/CAM policy may grant the heartbeat alone: not fatal
    assert "heartbeating with the configured timeout" in caplog.text
    assert kit.driver.bootstrapped
    kit.poll_due()
    sent = kit.clock.mono
    kit.answer(kit.server.assigned({kit.server.topic: [1]}))
    assert kit.new_records()[0]["lease_expires"] == rfc(sent + 10 - 1)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_rejected_key_at_bootstrap_is_an_error_and_the_key_is_read_again(provider: str) -> None:
    kit = Kit(group(provider))
    kit.poll()
    kit.answer(kit.server.bad_key())
    (rec,) = kit.new_records()
    assert rec["event"] == "error" and rec["source"] == "bootstrap"
    assert kit.keys.refreshes == 1  # a rotated key may be waiting
    assert not kit.driver.bootstrapped


def test_a_transport_failure_at_bootstrap_retries_fast() -> None:
    kit = Kit(group("sls"))
    kit.poll()
    kit.answer(failure=ProviderError("Timeout", "no answer", retry=Retry.FAST))
    (rec,) = kit.new_records()
    assert rec["source"] == "bootstrap" and rec["error"]["code"] == "Timeout"
    assert 100 <= rec["retry_in_ms"] <= 200  # the first fast retry: 0.1-0.2 s


def test_the_interval_is_fitted_to_a_server_timeout_it_does_not_fit(caplog: pytest.LogCaptureFixture) -> None:
    # configured: 2 s beats for a 10 s timeout; the server says 3 s (lease 2 s): 2 s beats would flap
    kit = Kit(group("sls", heartbeat_interval=2, timeout=10))
    kit.poll()
    with caplog.at_level(logging.WARNING):
        kit.answer(kit.server.groups(3))
    assert "beating every 1s instead" in caplog.text
    assert kit.driver.interval == 1  # min(timeout / 3, window / 2) = min(1, 1)
    booted = kit.clock.mono
    kit.beat({"demo-logstore": [0]})
    assert kit.driver.next_due() == pytest.approx(booted + 1)  # the new grid starts at bootstrap


def test_an_interval_that_fits_is_kept() -> None:
    kit = Kit(group("sls", heartbeat_interval=1, timeout=10))
    kit.bootstrap(server_timeout=4)  # lease 3 s: 1 s beats fit
    assert kit.driver.interval == 1


def test_no_first_key_waits_silently_then_reports_after_the_first_key_wait() -> None:
    keys = Keys(missing=True)
    kit = Kit(group("sls", heartbeat_interval=1), keys=keys)
    kit.poll()
    assert kit.pending == [] and kit.events() == []
    assert kit.driver.next_due() == pytest.approx(MONO0 + KEY_WAIT_STEP)  # looks again soon, silently
    for _ in range(1000):
        kit.poll_due()
        if kit.records:
            break
        assert kit.pending == []
    # the first key's wait (FIRST_KEY_WAIT, longer than the 0.9 s budget) is spent: now it is an
    # error, at the first look past it
    assert MONO0 + FIRST_KEY_WAIT - 1e-6 <= kit.clock.mono < MONO0 + FIRST_KEY_WAIT + KEY_WAIT_STEP
    (rec,) = kit.new_records()
    assert rec["source"] == "bootstrap" and rec["error"]["code"] == "CredentialsUnavailable"
    # later waits are one call budget each
    kit.poll_due()
    started = kit.clock.mono
    for _ in range(1000):
        kit.poll_due()
        if kit.new_records():
            break
    assert kit.clock.mono - started < 0.9 + KEY_WAIT_STEP + 1e-6
    keys.missing = False
    kit.poll_due()
    assert kit.only().action == "ListConsumerGroup"


def test_a_key_that_arrives_within_the_budget_costs_no_record() -> None:
    keys = Keys(missing=True)
    kit = Kit(group("sls"), keys=keys)
    kit.poll()
    kit.poll_due()
    keys.missing = False
    kit.poll_due()
    assert kit.only().action == "ListConsumerGroup"
    assert f"LOG {KEYS.key_id}:" in dict(kit.only().send.request.headers)["Authorization"]
    kit.answer(kit.server.groups(10))
    assert kit.records == []
