"""Fault injection: three real `shardbeat run` processes in one group against the emulator, under a
seeded random schedule of hangs, resets, dropped answers, 5xx / throttling errors, slow answers, a
SIGSTOP longer than the group timeout, wall-clock skew beyond the services' signature windows, and
the misbehaviours of whatever may answer in the server's place (trickled answer, oversized and
malformed bodies, HTTP/1.0, an HTML 200, a 302 redirect).

Every node has `checkpoints` and a downstream stand-in commits a fresh value for each shard it holds
(by its records) four times a second over its control socket, faults and freeze included.

Every run is judged afterwards by tests/ownership.py over all records and the emulator's log:
- every checkpoint the server accepted came from the shard's owner while its session was alive;
- no two nodes ever own one shard at the same time (intervals from records, no slack);
- no record continues past a lapsed lease without a `lost` first; the resumed node's first record
  is `lost`;
- every printed lease ends before the server could let the node go (last receipt + timeout), by at
  least the lease margin; `lost` comes before the server's expiry (SIGSTOP aside) and promptly
  after the lease;
- a skew change costs each node at most one RequestTimeExpired / AuthFailure.SignatureExpire;
- after the faults clear, a disjoint, balanced cover of all shards within 3 heartbeat intervals.
  The window starts once the server has heard from every node again after the clear (a node may
  sit in a backoff of up to one interval when the faults lift; that wait is the schedule's, not the
  protocol's) and, if a node was stopped, not before the server has expired it. The time from the
  clear itself is reported too.

A summary (gaps between the server's expiries and the nodes' `lost`, convergence) is printed
(`pytest -s`) and written to $SHARDBEAT_FAULT_REPORT or /tmp/shardbeat-fault-report.json.
SHARDBEAT_FAULT_SEED replays one schedule. One guarantee at a time: test_fault_guarantees.py.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import ownership
from fault_kit import (
    EARLY,
    INTERVAL,
    MARGIN,
    ROOT,
    SKEW,
    SKEW_CODE,
    TIMEOUT,
    WATCHDOG_LATE,
    Committer,
    admin,
    all_shards,
    fast_fixtures,
    live_cover,
    records,
    start_plugin,
)
from harness import Plugin, wait_for
from shardbeat.emulator.faults import MISBEHAVIOURS
from shardbeat.emulator.server import EmulatorServer

pytestmark = [pytest.mark.slow, pytest.mark.emulator_fixtures(fast_fixtures())]

RECORD = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "record.schema.json").read_text()))
NODES = ("node-0", "node-1", "node-2")
STATUS_FAULTS: dict[str, list[dict[str, Any]]] = {
    "sls": [
        {"status": 500, "error_code": "InternalServerError"},
        {"status": 503, "error_code": "ServerBusy"},
        {"status": 502},  # a proxy's bare 502 (the emulator names it ServerBusy)
    ],
    "cls": [{"error_code": "InternalError"}, {"error_code": "RequestLimitExceeded"}, {"status": 502}],
}
SEEDS = [int(os.environ["SHARDBEAT_FAULT_SEED"])] if "SHARDBEAT_FAULT_SEED" in os.environ else [20261]
CHAOS_SECONDS = 9.0
REPORT = Path(os.environ.get("SHARDBEAT_FAULT_REPORT", "/tmp/shardbeat-fault-report.json"))


# -- the schedule --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    at: float  # seconds into the chaos phase
    kind: str  # fault | stop | cont | skew
    node: str | None = None
    rule: dict[str, Any] = field(default_factory=dict)
    skew: float = 0.0


def schedule(seed: int, provider: str) -> list[Step]:
    """A seeded random fault schedule over CHAOS_SECONDS, plus one SIGSTOP past the timeout and two
    skew changes (out beyond the window, then back).

    Slow answers stay within the call budget. A request the node gives up on that the server still
    processes later, after a newer one, replays an older claim: that is a protocol hazard of its own
    (test_membership_properties.test_stale_heartbeat_processed_after_a_newer_one_does_not_release_shards),
    kept out of this run so that what this run flags is the plugin's doing.
    """
    rng = random.Random(seed)
    steps: list[Step] = []
    t = 0.2
    while t < CHAOS_SECONDS - 1.0:
        node = rng.choice(NODES)
        effect = rng.choices(["hang", "reset", "drop", "status", "delay"], weights=[3, 2, 2, 3, 2])[0]
        rule: dict[str, Any] = {"consumer": node, "action": "heartbeat", "effect": effect}
        if effect == "hang":
            # Sometimes longer than the group timeout: the server expires the node.
            rule.update(duration=round(rng.uniform(0.5, 4.0), 2), seconds=5)
        elif effect == "reset":
            rule.update(duration=round(rng.uniform(0.3, 2.0), 2))
        elif effect == "drop":
            rule.update(count=rng.randint(1, 4))
        elif effect == "status":
            rule.update(rng.choice(STATUS_FAULTS[provider]), duration=round(rng.uniform(0.3, 2.5), 2))
        else:  # slow answers, within the call budget (0.45 s): see the note on reordering above
            rule.update(seconds=round(rng.uniform(0.05, 0.4), 2), duration=round(rng.uniform(0.5, 2.0), 2))
        steps.append(Step(round(t, 2), "fault", node, rule))
        t += rng.uniform(0.3, 0.9)
    frozen = rng.choice(NODES)
    # One hang longer than the timeout for sure (the random ones may all be shorter): the server
    # expires a node that is alive and trying, the case the lease exists for.
    cut_off = rng.choice([n for n in NODES if n != frozen])
    long_hang = {"consumer": cut_off, "action": "heartbeat", "effect": "hang", "seconds": 5}
    steps.append(
        Step(round(rng.uniform(0.5, 3.0), 2), "fault", cut_off, {**long_hang, "duration": TIMEOUT + 1.0})
    )
    stop_at = round(rng.uniform(1.0, 2.5), 2)
    # Make a call likely to be in flight at the SIGSTOP: its answer then waits in the socket.
    slow = {"consumer": frozen, "action": "heartbeat", "effect": "delay", "seconds": 0.2, "count": 1}
    steps.append(Step(stop_at - 0.05, "fault", frozen, slow))
    steps.append(Step(stop_at, "stop", frozen))
    steps.append(Step(round(stop_at + TIMEOUT + 1.5, 2), "cont", frozen))
    skew_at = round(rng.uniform(3.0, 4.5), 2)
    steps.append(Step(skew_at, "skew", skew=SKEW[provider]))
    steps.append(Step(round(skew_at + rng.uniform(2.0, 3.0), 2), "skew", skew=0.0))
    steps += misbehaviours(seed)
    return sorted(steps, key=lambda s: s.at)


def misbehaviours(seed: int) -> list[Step]:
    """One of each misbehaviour of whatever may answer in the server's place (a trickled answer, an
    oversized or cut-off body, HTTP/1.0, an HTML page, a redirect), from an rng of their own so the
    rest of a seed's schedule stays what it was."""
    rng = random.Random(seed * 7 + 1)
    steps = []
    for effect in MISBEHAVIOURS:
        rule: dict[str, Any] = {"consumer": rng.choice(NODES), "action": "heartbeat", "effect": effect}
        rule["duration"] = round(rng.uniform(0.3, 1.5), 2)
        if effect == "oversized":
            rule["bytes"] = 3 << 19  # 1.5 MiB: over the client's 1 MiB limit
        steps.append(Step(round(rng.uniform(0.3, CHAOS_SECONDS - 1.5), 2), "fault", rule["consumer"], rule))
    return steps


def test_schedule_is_deterministic_and_covers_every_fault_kind() -> None:
    for provider in ("sls", "cls"):
        steps = schedule(SEEDS[0], provider)
        assert steps == schedule(SEEDS[0], provider)
        kinds = {s.kind for s in steps}
        effects = {s.rule["effect"] for s in steps if s.kind == "fault"}
        assert kinds == {"fault", "stop", "cont", "skew"}
        assert effects >= {"hang", "reset", "drop", "status", "delay", *MISBEHAVIOURS}, effects
        assert any(s.rule.get("duration", 0) > TIMEOUT for s in steps if s.rule.get("effect") == "hang")
        stop = next(s for s in steps if s.kind == "stop")
        cont = next(s for s in steps if s.kind == "cont")
        assert cont.at - stop.at > TIMEOUT and cont.at < CHAOS_SECONDS


# -- one run ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    provider: str
    seed: int
    mono_to_wall: float
    stops: list[tuple[str, float, float]] = field(default_factory=list)  # node, SIGSTOP wall, SIGCONT wall
    skew_changes: list[float] = field(default_factory=list)  # wall times
    cleared: float = 0.0  # wall time the faults were cleared


def play(emulator: EmulatorServer, plugins: dict[str, Plugin], steps: list[Step], run: Run) -> None:
    t0 = time.monotonic()
    stopped_at: dict[str, float] = {}
    for step in steps:
        delay = t0 + step.at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if step.kind == "fault":
            admin(emulator, "POST", "/_admin/faults", step.rule)
        elif step.kind == "skew":
            run.skew_changes.append(time.time())
            admin(emulator, "POST", "/_admin/clock", {"skew": step.skew})
        elif step.kind == "stop":
            assert step.node is not None
            stopped_at[step.node] = time.time()
            plugins[step.node].proc.send_signal(signal.SIGSTOP)
        else:
            assert step.node is not None
            resumed = time.time()  # before the signal: nothing the process writes can be earlier
            plugins[step.node].proc.send_signal(signal.SIGCONT)
            run.stops.append((step.node, stopped_at.pop(step.node), resumed))
    left = t0 + CHAOS_SECONDS - time.monotonic()
    if left > 0:
        time.sleep(left)


@dataclass(slots=True)
class Outcome:
    run: Run
    records: dict[str, list[dict[str, Any]]]  # node -> its records up to `until`
    receipts: list[ownership.Receipt]
    logs: dict[str, str]  # node -> stderr
    until: float  # wall time the observation ended (before the processes were stopped)
    log: list[dict[str, Any]]  # the emulator's log as /_admin/log gave it (commits included)


def fault_run(emulator: EmulatorServer, tmp_path: Path, provider: str, seed: int) -> Outcome:
    run = Run(provider, seed, time.time() - time.monotonic())
    checkpoints = {"commit_interval": 0.3}
    plugins = {name: start_plugin(emulator, tmp_path, provider, name, checkpoints) for name in NODES}
    committer = Committer(plugins, tmp_path, provider)
    try:
        assert wait_for(lambda: live_cover(plugins, provider), 20), {n: p.log() for n, p in plugins.items()}
        committer.start()
        play(emulator, plugins, schedule(seed, provider), run)
        run.cleared = time.time()
        admin(emulator, "DELETE", "/_admin/faults")
        admin(emulator, "POST", "/_admin/clock", {"skew": 0})
        # Converged and then some: long enough to see a cover (asserted on record times below).
        wait_for(lambda: live_cover(plugins, provider), 4 * INTERVAL + TIMEOUT)
        time.sleep(2 * INTERVAL)
        committer.done.set()
        committer.join(2)
        until = time.time()
        log = admin(emulator, "GET", "/_admin/log?since=0")["receipts"]
        for p in plugins.values():
            assert p.terminate() == 0, p.log()
            p.finish()
    finally:
        for p in plugins.values():
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGCONT)  # a frozen process cannot die of SIGTERM
            p.kill()
    drift = (time.time() - time.monotonic()) - run.mono_to_wall
    assert abs(drift) < 0.01, f"wall and monotonic clocks drifted {drift:.3f}s apart during the run"
    receipts = ownership.receipts_from_log(log, run.mono_to_wall, group="demo-group")
    # Judge only what happened up to `until`: the stop itself is not under test here.
    recs = {}
    for name, p in plugins.items():
        everything = records(p)
        for rec in everything:
            RECORD.validate(rec)
        recs[name] = [r for r in everything if ownership.parse_time(r["time"]) <= until]
    return Outcome(run, recs, receipts, {name: p.log() for name, p in plugins.items()}, until, log)


def summarize(run: Run, report: ownership.Report, convergence: dict[str, float | None]) -> dict[str, Any]:
    frozen = [(node, a, b) for node, a, b in run.stops]

    def during_freeze(gap: ownership.Gap) -> bool:
        return any(node == gap.node and a <= gap.server_expiry <= b + 0.001 for node, a, b in frozen)

    lost_gaps = [g.lost_gap for g in report.gaps if g.lost_gap is not None and not during_freeze(g)]
    return {
        "provider": run.provider,
        "seed": run.seed,
        "server_expiries": len(report.gaps),
        "worst_lost_minus_server_expiry_s": max(lost_gaps, default=None),
        "best_lost_minus_server_expiry_s": min(lost_gaps, default=None),
        "worst_lease_minus_server_expiry_s": max((g.lease_gap for g in report.gaps), default=None),
        "frozen_lost_minus_server_expiry_s": [
            g.lost_gap for g in report.gaps if during_freeze(g) and g.lost_gap is not None
        ],
        **convergence,
    }


def write_summary(summary: dict[str, Any]) -> None:
    existing: list[dict[str, Any]] = []
    if REPORT.exists():
        try:
            loaded = json.loads(REPORT.read_text())
            existing = loaded if isinstance(loaded, list) else []
        except ValueError:
            existing = []
    existing = [
        s for s in existing if (s.get("provider"), s.get("seed")) != (summary["provider"], summary["seed"])
    ]
    # A shared path (xdist workers, other checkouts, other users): written whole under a name of its
    # own, then renamed, so a reader never sees half a file; a report that cannot be written fails
    # no test.
    part = REPORT.with_name(f"{REPORT.name}.{os.getpid()}.part")
    try:
        part.write_text(json.dumps([*existing, summary], indent=2))
        os.replace(part, REPORT)
    except OSError as exc:
        print(f"\nfault run summary not written to {REPORT}: {exc}")
        with contextlib.suppress(OSError):
            part.unlink()
    print(f"\nfault run summary: {json.dumps(summary)}")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_random_faults_never_give_one_shard_two_owners(
    emulator: EmulatorServer, tmp_path: Path, provider: str, seed: int
) -> None:
    outcome = fault_run(emulator, tmp_path, provider, seed)
    run, recs, receipts, until = outcome.run, outcome.records, outcome.receipts, outcome.until
    for name, text in outcome.logs.items():
        assert "Traceback" not in text, f"{name}:\n{text}"

    report = ownership.check(recs, receipts, TIMEOUT, until)
    problems = report.problems()
    assert not problems, "\n".join(problems)

    # Checkpoints: every value the server accepted came from the shard's owner while it was alive.
    commit_problems, accepted = ownership.commit_violations(outcome.log, TIMEOUT, group="demo-group")
    assert not commit_problems, "\n".join(f"{v.kind} at {v.node}: {v.detail}" for v in commit_problems)
    assert accepted > 10, f"only {accepted} commits accepted: the run proved little about checkpoints"
    committed = [r for rs in recs.values() for r in rs if r["event"] == "committed"]
    assert committed, "no node reported a committed record"

    # Every lease the nodes printed ended at least a margin before the server could let go.
    for gap in report.gaps:
        assert gap.lease_gap <= -MARGIN + 0.001, gap

    # The watchdog: `lost` at once when the lease passes, before the server's expiry, whatever the
    # network does; only a frozen process may say it late, and then it says it first.
    frozen = {(node, a, b) for node, a, b in run.stops}
    for name, rs in recs.items():
        for t, late in ownership.watchdog_delays(name, rs):
            thawed = any(node == name and a <= t - late <= b for node, a, b in frozen)
            if not thawed:
                assert late <= WATCHDOG_LATE, f"{name}: lost {late:.3f}s after its lease"
    for gap in report.gaps:
        if gap.lost_gap is not None and not any(
            node == gap.node and a <= gap.server_expiry <= b + 0.001 for node, a, b in frozen
        ):
            assert gap.lost_gap < 0, f"{gap.node} wrote lost {gap.lost_gap:.3f}s after the server expired it"
    assert run.stops, "the schedule must freeze a node"
    for node, stopped, resumed in run.stops:
        # Split at SIGCONT, not SIGSTOP: a record stamped in the instant before the stop took hold
        # rounds to the millisecond of the stop.
        before = [r for r in recs[node] if ownership.parse_time(r["time"]) < resumed - EARLY]
        after = [r for r in recs[node] if ownership.parse_time(r["time"]) >= resumed - EARLY]
        assert after, f"{node} wrote nothing after SIGCONT"
        ownership_before = [r for r in before if r["event"] in ownership.OWNERSHIP_EVENTS]
        if ownership_before and ownership_before[-1]["event"] in ("assignment", "lease"):
            shown = [(r["event"], r["time"], r.get("lease_expires")) for r in [*before[-3:], *after[:3]]]
            assert after[0]["event"] == "lost", f"{node} stopped {stopped}, resumed {resumed}: {shown}"
            assert after[0]["reason"] == "lease_expired"
    # A server-side expiry must have happened, or the run proved little about handovers.
    assert report.gaps, "no node was ever expired by the server: the schedule is too gentle"

    # Skew: each change costs a node at most one signature-window error. (It may cost none: the Date
    # of any answer corrects the clock, a fault's 500 included; test_fault_guarantees.py shows the
    # error-and-one-retry path on its own.)
    code = SKEW_CODE[run.provider]
    bounds = [*(t - EARLY for t in run.skew_changes), float("inf")]
    for lo, hi in itertools.pairwise(bounds):
        for name, rs in recs.items():
            n = sum(
                1
                for r in rs
                if r["event"] == "error"
                and r["error"]["code"] == code
                and lo <= ownership.parse_time(r["time"]) < hi
            )
            assert n <= 1, f"{name}: {n} {code} errors after one skew change"
    before = [r for rs in recs.values() for r in rs if r["event"] == "error" and r["error"]["code"] == code]
    assert all(ownership.parse_time(r["time"]) >= run.skew_changes[0] - EARLY for r in before)

    # Convergence after the faults clear.
    nodes = list(recs)
    heard: list[float] = []
    for name in nodes:
        walls = [r.wall for r in receipts if r.node == name and r.processed and r.wall >= run.cleared]
        assert walls, f"the server never heard from {name} after the faults cleared"
        heard.append(min(walls))
    window = max([run.cleared, *heard])
    for expiry in ownership.server_expiries(receipts, TIMEOUT, until):
        if any(node == expiry.node for node, _, _ in run.stops) and expiry.at > run.cleared:
            window = max(window, expiry.at)
    settled = ownership.first_cover(report.intervals, nodes, all_shards(provider), window)
    from_clear = ownership.first_cover(report.intervals, nodes, all_shards(provider), run.cleared)
    summary = summarize(
        run,
        report,
        {
            "cover_after_window_start_s": None if settled is None else settled - window,
            "cover_after_clear_s": None if from_clear is None else from_clear - run.cleared,
            "window_start_after_clear_s": window - run.cleared,
        },
    )
    write_summary(summary)
    assert settled is not None, "no disjoint balanced cover after the faults cleared"
    assert settled - window <= 3 * INTERVAL, f"cover {settled - window:.3f}s after the window opened"
