"""The membership guarantees one at a time, with real `shardbeat run` processes against the emulator
(and, for one race, an in-process Runner with a gated transport and a jumping clock):

1. the lease watchdog: after a SIGSTOP past the lease, the first record is `lost` whatever was in
   flight; a failure handled after a lapse still comes after the `lost`;
3. revoked is not lost; after a loss or NotExistConsumerWithBody the next heartbeat claims nothing,
   and there is no error loop;
4. clock skew beyond the signature window costs exactly one immediate, re-signed retry.

Guarantee 2 (bounded calls) is in test_fuzz_responses.py (a trickling answer); everything together,
under random faults, in test_faults.py.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ownership
from fault_kit import (
    EARLY,
    INTERVAL,
    MARGIN,
    SKEW,
    SKEW_CODE,
    TIMEOUT,
    WATCHDOG_LATE,
    admin,
    fast_fixtures,
    live_cover,
    records,
    start_plugin,
)
from harness import Plugin, wait_for
from shardbeat.config import config_from_dict
from shardbeat.emulator.server import EmulatorServer
from shardbeat.providers.base import Endpoint, HttpRequest, HttpResponse
from shardbeat.runtime.clock import Clock
from shardbeat.runtime.output import RecordWriter
from shardbeat.runtime.runner import Runner
from shardbeat.runtime.transport import HttpTransport, TransportError

pytestmark = [pytest.mark.slow, pytest.mark.emulator_fixtures(fast_fixtures())]


# -- the frozen process, on its own ------------------------------------------------------------------


def first_after(p: Plugin, since: float, timeout: float) -> list[dict[str, Any]]:
    def later() -> list[dict[str, Any]]:
        return [r for r in records(p) if ownership.parse_time(r["time"]) >= since]

    p.wait_for(lambda _: any(r["event"] in ("assignment", "lease") for r in later()), timeout)
    return later()


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_sigstop_past_the_timeout_resumes_with_lost_first_whatever_was_in_flight(
    emulator: EmulatorServer, tmp_path: Path, provider: str
) -> None:
    """Frozen mid-call (a hanging request; an answer that arrives while frozen) or idle: after SIGCONT
    the first record is `lost` (reason lease_expired), and only then a fresh `assignment`."""
    p = start_plugin(emulator, tmp_path, provider, "frozen")
    try:
        assert p.wait_for(lambda rs: any(r["event"] == "lease" for r in rs), 30), p.log()
        rule = {"consumer": "frozen", "action": "heartbeat"}
        in_flight = {
            "hang": {**rule, "effect": "hang", "seconds": 1.0, "count": 1},
            "answer-while-frozen": {**rule, "effect": "delay", "seconds": 0.3, "count": 1},
            "idle": None,
        }
        for case, fault in in_flight.items():
            if fault is not None:
                admin(emulator, "POST", "/_admin/faults", fault)
                # the next beat picks it up within an interval; stop while it is in flight
                assert wait_for(lambda: admin(emulator, "GET", "/_admin/faults")["rules"] == [], 2)
                time.sleep(0.05)
            else:
                time.sleep(0.05)  # just after the last beat's answer: nothing in flight
            p.proc.send_signal(signal.SIGSTOP)
            time.sleep(TIMEOUT + 0.5)
            resumed = time.time()
            p.proc.send_signal(signal.SIGCONT)
            after = first_after(p, resumed - EARLY, 5)
            events = [r["event"] for r in after]
            assert events and events[0] == "lost", f"{case}: first records after SIGCONT {events[:4]}"
            assert after[0]["reason"] == "lease_expired"
            granted = events.index("assignment")
            assert "lease" not in events[:granted], f"{case}: {events}"
        p.terminate()
        p.finish()
        problems = ownership.check({"frozen": records(p)}).problems()
        assert not problems, problems
        assert "Traceback" not in p.log()
    finally:
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGCONT)
        p.kill()


# -- the same race, made deterministic in-process ----------------------------------------------------


class GatedTransport:
    """The real transport, except that an armed gate holds the next heartbeat in flight until
    released and then fails it as a timeout would (what a frozen process sees on SIGCONT)."""

    def __init__(self, monotonic: Any) -> None:
        self.inner = HttpTransport(monotonic)
        self.armed = False
        self.entered = threading.Event()
        self.released = threading.Event()

    def send(self, endpoint: Endpoint, request: HttpRequest, deadline: float) -> HttpResponse:
        heartbeat = (
            "type=heartbeat" in request.target or ("X-TC-Action", "SendConsumerHeartbeat") in request.headers
        )
        if heartbeat and self.armed:
            self.armed = False
            self.entered.set()
            self.released.wait(10)
            raise TransportError("Timeout", "no answer before the call's deadline")
        return self.inner.send(endpoint, request, deadline)

    def close(self) -> None:
        self.inner.close()


@dataclass(slots=True)
class Jump:
    seconds: float = 0.0

    def clock(self) -> Clock:
        return Clock(
            monotonic=lambda: time.monotonic() + self.seconds, wall=lambda: time.time() + self.seconds
        )


def read_records(fd: int, out: list[dict[str, Any]]) -> None:
    with os.fdopen(fd, "rb") as pipe:
        for line in pipe:
            out.append(json.loads(line))


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_failure_answered_after_a_lapse_still_writes_lost_first(
    emulator: EmulatorServer, provider: str
) -> None:
    group = {**emulator.demo_config(provider), "consumer": "gated"}
    group.update(heartbeat_interval=INTERVAL, timeout=TIMEOUT)
    config = config_from_dict({"groups": [group]}).config
    jump = Jump()
    clock = jump.clock()
    transport = GatedTransport(clock.monotonic)
    read_fd, write_fd = os.pipe()
    got: list[dict[str, Any]] = []
    reader = threading.Thread(target=read_records, args=(read_fd, got), daemon=True)
    reader.start()
    writer = RecordWriter(write_fd)
    runner = Runner(config.groups, writer, transport=transport, clock=clock)
    main = threading.Thread(target=runner.run, daemon=True)
    main.start()
    try:
        assert wait_for(lambda: any(r["event"] == "lease" for r in got), 30)
        transport.armed = True
        assert transport.entered.wait(5)
        jump.seconds += TIMEOUT + 1.0  # the process "was frozen" past its lease while the call hung
        mark = len(got)
        transport.released.set()
        assert wait_for(lambda: any(r["event"] == "lost" for r in got[mark:]), 5), got[mark:]
        events = [r["event"] for r in got[mark:]]
        assert events[0] == "lost", f"first records after the lapse: {events[:3]}"
    finally:
        runner.stop()
        main.join(5)
        os.close(write_fd)
        reader.join(5)


# -- revoked is not lost; after a loss the next claim is empty (no error loop) ---------------------------


LATE_ARRIVAL = 0.25  # how much later than its send a loaded emulator may log a request


def held_after(emulator: EmulatorServer, consumer: str, since_seq: int) -> list[dict[str, Any]]:
    log = admin(emulator, "GET", f"/_admin/log?since={since_seq}")["receipts"]
    return [r for r in log if r["consumer"] == consumer]


def claims_nothing(receipt: dict[str, Any]) -> bool:
    return receipt["held"] is not None and all(not ids for ids in receipt["held"].values())


def regained_by_an_earlier_beat(p: Plugin, lost_at: float) -> bool:
    """Whether an answer to a heartbeat sent before the `lost` renewed the lease after it (a loaded
    machine: the beat reached the server late, its answer came as the lease ran out). Its lease runs
    from that send, by the rule; the claims that follow it are the node's own, not stale ones."""
    seen = records(p)
    lost = max(
        i for i, r in enumerate(seen) if r["event"] == "lost" and ownership.parse_time(r["time"]) == lost_at
    )
    after = seen[lost:]
    return any(
        r["event"] == "assignment"
        and any(r["assigned"].values())
        and ownership.parse_time(r["lease_expires"]) - (TIMEOUT - MARGIN) < lost_at
        for r in after
    )


def first_answered_after_the_loss(
    emulator: EmulatorServer, consumer: str, mark: int, lost_at: float
) -> dict[str, Any] | None:
    """The first heartbeat since log entry `mark` the server answered at or after `lost_at`, skipping
    claims that arrived within LATE_ARRIVAL of it (sent just before the `lost`); None: none yet."""
    log = held_after(emulator, consumer, mark)
    answered = [r for r in log if r["assigned"] is not None and r["wall"] >= lost_at]
    while answered and not claims_nothing(answered[0]) and answered[0]["wall"] < lost_at + LATE_ARRIVAL:
        answered.pop(0)
    return answered[0] if answered else None


def test_server_forgetting_the_consumer_costs_one_error_then_an_empty_claim(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """SLS answers NotExistConsumerWithBody to a claim from a consumer it dropped: the node reports
    `lost` (consumer_unknown) and claims nothing next, which registers it again. One error, no loop."""
    p = start_plugin(emulator, tmp_path, "sls", "forgotten")
    try:
        assert p.wait_for(lambda rs: any(r["event"] == "lease" for r in rs), 30), p.log()
        mark = admin(emulator, "GET", "/_admin/log?since=0")["next"]
        n = len(records(p))
        admin(emulator, "POST", "/_admin/clock", {"advance": TIMEOUT + 1})  # the server's timeout passes
        assert p.wait_for(lambda rs: any(r["event"] == "assignment" for r in rs[n:]), 5), records(p)[n:]
        time.sleep(3 * INTERVAL)
        events = [r for r in records(p)[n:] if r["event"] != "lease"]
        codes = [r["error"]["code"] for r in events if r["event"] == "error"]
        assert codes == ["NotExistConsumerWithBody"], codes
        assert [r["event"] for r in events[:3]] == ["error", "lost", "assignment"] or [
            r["event"] for r in events[:3]
        ] == ["lost", "error", "assignment"], events[:3]
        lost = next(r for r in events if r["event"] == "lost")
        assert lost["reason"] == "consumer_unknown" and lost["lost"] == {"demo-logstore": list(range(6))}
        receipts = held_after(emulator, "forgotten", mark)
        refused = [i for i, r in enumerate(receipts) if r["error"] == "NotExistConsumerWithBody"]
        assert len(refused) == 1
        assert claims_nothing(receipts[refused[0] + 1]), receipts[refused[0] + 1]
        p.terminate()
        p.finish()
    finally:
        p.kill()


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_after_a_lapse_the_next_heartbeat_claims_nothing(
    emulator: EmulatorServer, tmp_path: Path, provider: str
) -> None:
    p = start_plugin(emulator, tmp_path, provider, "lapsed")
    try:
        assert p.wait_for(lambda rs: any(r["event"] == "lease" for r in rs), 30), p.log()
        admin(emulator, "POST", "/_admin/faults", {"consumer": "lapsed", "effect": "hang", "seconds": 5})
        assert p.wait_for(lambda rs: any(r["event"] == "lost" for r in rs), 2 * TIMEOUT), records(p)
        mark = admin(emulator, "GET", "/_admin/log?since=0")["next"]
        admin(emulator, "DELETE", "/_admin/faults")
        n = len(records(p))
        assert p.wait_for(lambda rs: any(r["event"] == "assignment" for r in rs[n:]), 5), records(p)[n:]
        # A request hung since before the loss may still be logged after `mark` (the server logs it on
        # arrival): the first heartbeat the server *answered* is the first one built after the loss.
        # One sent just before the `lost` may also reach a loaded server only after the faults are
        # cleared, and be answered: skip those, as the test below does.
        # (Its answer may be the `assignment` waited for above: wait for the server's log instead.)
        lost_at = ownership.parse_time(next(r for r in records(p) if r["event"] == "lost")["time"])

        first = wait_for(lambda: first_answered_after_the_loss(emulator, "lapsed", mark, lost_at), 5)
        assert first is not None and (claims_nothing(first) or regained_by_an_earlier_beat(p, lost_at)), (
            lost_at,
            held_after(emulator, "lapsed", 0),
        )
        after = held_after(emulator, "lapsed", mark)
        assert not [r for r in after if r["error"] is not None]  # registered (again) at once, no error
        assert next(r for r in records(p) if r["event"] == "lost")["reason"] == "lease_expired"
        p.terminate()
        p.finish()
        assert not ownership.check({"lapsed": records(p)}).problems()
    finally:
        p.kill()


SUSTAINED = ("trickle", "oversized", "malformed", "html200", "redirect")


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_sustained_misbehaviour_past_the_lease_loses_on_time_then_claims_nothing(
    emulator: EmulatorServer, tmp_path: Path, provider: str
) -> None:
    """Whatever answers in the server's place for longer than the lease (a trickle, a huge or cut-off
    body, a portal's HTML page, a redirect): every failed beat is an `error` record naming it, `lost`
    comes when the lease runs out, the first answered heartbeat afterwards claims nothing, and no
    two nodes' ownership ever overlaps with the server's view."""
    p = start_plugin(emulator, tmp_path, provider, "misled")
    try:
        assert p.wait_for(lambda rs: any(r["event"] == "lease" for r in rs), 30), p.log()
        for effect in SUSTAINED:
            n = len(records(p))
            rule = {"consumer": "misled", "action": "heartbeat", "effect": effect, "duration": TIMEOUT + 0.5}
            admin(emulator, "POST", "/_admin/faults", rule)
            assert p.wait_for(lambda rs, n=n: any(r["event"] == "lost" for r in rs[n:]), 2 * TIMEOUT), effect
            mark = admin(emulator, "GET", "/_admin/log?since=0")["next"]
            admin(emulator, "DELETE", "/_admin/faults")
            assert p.wait_for(lambda rs, n=n: any(r["event"] == "assignment" for r in rs[n:]), 15), effect
            seen = records(p)[n:]
            lost = next(r for r in seen if r["event"] == "lost")
            assert lost["reason"] == "lease_expired", (effect, lost)
            errors = [r for r in seen if r["event"] == "error"]
            assert errors and all(r["source"] == "heartbeat" for r in errors), (effect, seen)
            assert all(len(json.dumps(r)) < 2048 for r in errors), effect
            # The first heartbeat the server handled after the `lost` claims nothing. One sent just
            # before the `lost` may be handled just after it (a trickled one is handled on arrival, and
            # under load the rule may lapse right then): skip those.
            # (Its answer may be the `assignment` waited for above: wait for the server's log instead.)
            lost_at = ownership.parse_time(lost["time"])
            first = wait_for(
                functools.partial(first_answered_after_the_loss, emulator, "misled", mark, lost_at), 5
            )
            assert first is not None and (claims_nothing(first) or regained_by_an_earlier_beat(p, lost_at)), (
                effect,
                lost_at,
                held_after(emulator, "misled", mark),
            )
        p.terminate()
        p.finish()
        everything = records(p)
        for _, late in ownership.watchdog_delays("misled", everything):
            assert late <= WATCHDOG_LATE, f"lost {late:.3f}s after the lease"
        receipts = ownership.receipts_from_log(
            admin(emulator, "GET", "/_admin/log?since=0")["receipts"], time.time() - time.monotonic()
        )
        assert not ownership.check({"misled": everything}, receipts, TIMEOUT).problems()
        assert "Traceback" not in p.log() and "internal error" not in p.log(), p.log()
    finally:
        p.kill()


def test_rebalance_revokes_without_a_loss(emulator: EmulatorServer, tmp_path: Path) -> None:
    """A healthy node asked to give shards up gets a revoke (assignment with `revoked`), never `lost`."""
    first = start_plugin(emulator, tmp_path, "sls", "first")
    second: Plugin | None = None
    try:
        assert first.wait_for(lambda rs: any(r["event"] == "lease" for r in rs), 30), first.log()
        second = start_plugin(emulator, tmp_path, "sls", "second")
        plugins = {"first": first, "second": second}
        assert wait_for(lambda: live_cover(plugins, "sls"), 30)
        revokes = [r for r in first.events("assignment") if r["revoked"]]
        assert revokes and sum(len(ids) for ids in revokes[0]["revoked"].values()) == 3
        assert not first.events("lost") and not first.events("error")
        for p in plugins.values():
            p.terminate()
            p.finish()
        assert not ownership.check({name: records(p) for name, p in plugins.items()}).problems()
    finally:
        first.kill()
        if second is not None:
            second.kill()


# -- clock skew: measured, one retry --------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_skew_beyond_the_window_costs_exactly_one_immediate_retry(
    emulator: EmulatorServer, tmp_path: Path, provider: str
) -> None:
    p = start_plugin(emulator, tmp_path, provider, "skewed")
    try:
        assert p.wait_for(lambda rs: any(r["event"] == "lease" for r in rs), 30), p.log()
        for skew in (SKEW[provider], 0.0, -SKEW[provider]):
            n = len(records(p))

            def three_more(rs: list[dict[str, Any]], n: int = n) -> bool:
                return len([r for r in rs[n:] if r["event"] != "error"]) >= 3

            admin(emulator, "POST", "/_admin/clock", {"skew": skew})
            assert p.wait_for(three_more, 5)
            seen = records(p)[n:]
            errors = [r for r in seen if r["event"] == "error"]
            assert [r["error"]["code"] for r in errors] == [SKEW_CODE[provider]], (skew, seen)
            assert errors[0]["retry_in_ms"] == 0  # re-signed with the corrected clock at once
            after = seen[seen.index(errors[0]) + 1]
            assert after["event"] in ("lease", "assignment"), after
            gap = ownership.parse_time(after["time"]) - ownership.parse_time(errors[0]["time"])
            assert gap < 0.25, f"recovery took {gap:.3f}s"
            assert not [r for r in seen if r["event"] == "lost"]
        p.terminate()
        p.finish()
    finally:
        p.kill()
