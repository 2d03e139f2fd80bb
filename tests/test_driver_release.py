"""GroupDriver step tests: revoked shards are released once downstream has been told (immediate: the
revoke record is written; ack: downstream's `released`, or the grace runs out), then a beat goes at
once; `held`; beats asked for while one is in flight. Fake clock, real providers (tests/driver_kit.py)."""

from __future__ import annotations

import logging

import pytest

from driver_kit import LOGSTORE, Kit, claim_of, group, shards

ALL = {LOGSTORE: [0, 1, 2, 3, 4, 5]}
KEPT = {LOGSTORE: [0, 1, 2]}
REVOKED = {LOGSTORE: frozenset({3, 4, 5})}


def revoked(**over: object) -> Kit:
    """A group that held six shards and was just told three of them moved away."""
    kit = Kit(group("sls", **over))
    kit.bootstrap()
    kit.beat(ALL)
    kit.beat(KEPT)
    first, second = kit.new_records()
    assert first["event"] == "assignment" and second["event"] == "assignment"
    assert second["revoked"] == {LOGSTORE: [3, 4, 5]} and second["assigned"] == KEPT
    return kit


def test_immediate_release_waits_for_the_revoke_to_be_written_then_beats_at_once() -> None:
    kit = revoked()
    assert kit.emits[-1].release == REVOKED  # the shell releases them once this record is written
    assert kit.driver.membership.claim() == shards(ALL)  # still listed until downstream knows
    due_before = kit.driver.next_due()
    assert due_before > kit.clock.mono  # nothing special yet: the revoke is not on stdout
    kit.clock.advance(0.05)
    kit.release_written()
    assert kit.driver.membership.releasing == {}
    assert kit.driver.next_due() == kit.clock.mono  # tell the server now: the next owner waits
    kit.poll_due()
    assert claim_of(kit.only().send.request) == KEPT


def test_a_release_while_a_beat_is_in_flight_beats_again_when_it_is_answered() -> None:
    kit = revoked()
    kit.poll_due()  # a beat is out, still listing the revoked shards
    assert claim_of(kit.only().send.request) == ALL
    kit.release_written()
    assert kit.driver.next_due() == kit.driver.membership.lease.expires_at  # one beat at a time
    kit.answer(kit.server.assigned(KEPT), after=0.1)
    assert kit.driver.next_due() == kit.clock.mono  # beat_soon: right after the answer, not a tick later
    kit.poll_due()
    assert claim_of(kit.only().send.request) == KEPT


def test_ack_mode_keeps_claiming_until_downstream_acks() -> None:
    kit = revoked(release="ack", release_grace=60)
    assert kit.emits[-1].release is None  # written is not enough: downstream must say `released`
    kit.release_written()
    kit.poll_due()
    assert claim_of(kit.only().send.request) == ALL  # still listed: the server cannot hand them on
    kit.answer(kit.server.assigned(KEPT))
    kit.clock.advance(0.1)
    done = kit.driver.release({LOGSTORE: frozenset({3, 4})}, kit.clock.now())
    assert done == {LOGSTORE: frozenset({3, 4})}
    assert kit.driver.awaiting_ack.keys() == {(LOGSTORE, 5)}
    assert kit.driver.next_due() == kit.clock.mono
    kit.poll_due()
    assert claim_of(kit.only().send.request) == {LOGSTORE: [0, 1, 2, 5]}


def test_ack_mode_releases_anyway_once_the_grace_is_over(caplog: pytest.LogCaptureFixture) -> None:
    kit = revoked(release="ack", release_grace=0.5)
    told = kit.clock.mono
    assert kit.driver.next_due() == pytest.approx(told + 0.5)  # the ack deadline, before the next tick
    kit.poll(told + 0.499)
    assert kit.driver.membership.releasing == REVOKED
    with caplog.at_level(logging.WARNING):
        kit.poll(told + 0.5)
    assert "no `released` ack within 0.5s" in caplog.text
    assert kit.driver.membership.releasing == {} and kit.driver.awaiting_ack == {}
    assert claim_of(kit.only().send.request) == KEPT  # and the server hears it in the same poll
    assert kit.events() == []  # no record: the revoke already told downstream


def test_the_ack_grace_defaults_to_the_group_timeout() -> None:
    kit = revoked(release="ack")
    told = kit.clock.mono
    assert min(kit.driver.awaiting_ack.values()) == pytest.approx(told + 10)


def test_held_releases_the_revoked_shards_downstream_no_longer_holds() -> None:
    kit = revoked(release="ack", release_grace=60)
    done = kit.driver.held({LOGSTORE: frozenset({0, 1, 2, 3})}, kit.clock.now())
    assert done == {LOGSTORE: frozenset({4, 5})}
    assert kit.driver.membership.releasing == {LOGSTORE: frozenset({3})}


def test_releasing_what_is_not_releasing_changes_nothing() -> None:
    kit = revoked(release="ack", release_grace=60)
    due = kit.driver.next_due()
    assert kit.driver.release({LOGSTORE: frozenset({0, 9})}, kit.clock.now()) == {}
    assert kit.driver.membership.releasing == REVOKED and kit.driver.next_due() == due


def test_a_loss_forgets_the_acks_it_was_waiting_for() -> None:
    kit = revoked(release="ack", release_grace=60)
    end = kit.driver.membership.lease.expires_at
    assert end is not None
    kit.poll(end)
    assert kit.events() == ["lost"]
    assert kit.driver.awaiting_ack == {} and kit.driver.membership.claim() == {}


def test_abandon_forgets_the_acks_it_was_waiting_for() -> None:
    kit = revoked(release="ack", release_grace=5)
    kit.driver.abandon()
    assert kit.driver.awaiting_ack == {}
    assert kit.driver.next_due() == float("inf")
