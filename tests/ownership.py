"""The ownership checker: who owned which shard when, from the records nodes printed and the
emulator's heartbeat log. Pure functions over plain data, so they can be proven on hand-made
timelines (tests/test_ownership_checker.py) before they are trusted with a fault run.

Semantics (what "node N owns shard s during [start, end)" means):

- Records are read per node in the order the node wrote them. Only `assignment`, `lease`, `lost` and
  `stopped` matter; `error`, `status` and anything else never change ownership.
- Ownership of s starts at the `time` of an `assignment` record whose `assigned` lists s while N did
  not own s. The record time is when the plugin wrote it: that is its claim, and we take it as such.
- It ends at the earliest of
  (a) the `time` of the first later record that drops s: an `assignment` without s (revoked), a
  `lost` or a `stopped` record; and
  (b) the lease in force: the largest `lease_expires` N has printed since it last joined (every
  `assignment` and `lease` record renews it for all shards N owns). The largest, not the latest,
  because downstream was told it may act until then; the engine never shortens a lease anyway.
  A node that prints nothing more (killed, frozen) therefore stops owning at its lease.
- A record written after the lease in force ran out, without a `lost` in between, does not revive
  the old interval: the interval ended at the lease. Such a record is itself a violation (`lapse`):
  downstream would have been told to continue over a gap in which the server could already have
  moved the shard. A new `assignment` after a lapse starts a new interval at its own time.
- Intervals are half-open: [start, end). Two nodes overlap when their intervals for the same shard
  (topic, id) intersect, by any positive amount. No slack is allowed: the lease margin is what must
  keep handovers apart, not the checker. Times are RFC 3339 with milliseconds, written by processes
  on the same machine, hence comparable across nodes.

The server-side view comes from the emulator's log (GET /_admin/log): one receipt per heartbeat it
saw, with the wall time it saw it. A receipt "counts" (`processed`) when the server handled the
heartbeat and reset the consumer's session timer: it answered an assignment (an answer the client
never got, fault `drop`, still counts). Errors, hangs and resets leave the timer alone.

- `lease_beyond_server`: every printed `lease_expires` must be no later than (the last processed
  receipt of that node with wall <= the record's time) + the group timeout. The lease runs from the
  SEND time of the heartbeat, which precedes its receipt, so this holds with the lease margin to
  spare. "<= the record's time" allows 1 ms for the record's millisecond resolution.
- `server_expiries`: the instants at which the server dropped a node (no processed receipt for a
  whole timeout), and `expiry_gaps` how they relate to the node's own view: the lease it had printed
  and the `lost` it wrote. A positive gap means the node still claimed after the server let go.

Receipt times must be on the records' clock: the fault suite converts the emulator's monotonic
receipt times to wall time itself (the emulator's own `wall` includes any injected skew).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Record = Mapping[str, Any]
Shard = tuple[str, int]  # (topic, shard id)

OWNERSHIP_EVENTS = ("assignment", "lease", "lost", "stopped")
ROUNDING = 0.001  # record times have millisecond resolution


def parse_time(text: str) -> float:
    """RFC 3339 (as records print it, e.g. 2026-11-23T17:10:00.123Z) -> epoch seconds."""
    when = _dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"record time without a zone: {text!r}")
    return when.timestamp()


def shards_of(listing: Mapping[str, Iterable[int]]) -> set[Shard]:
    return {(topic, int(shard)) for topic, ids in listing.items() for shard in ids}


@dataclass(frozen=True, slots=True)
class Interval:
    node: str
    shard: Shard
    start: float
    end: float

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str  # lapse | orphan-lease | expired-grant | lease-beyond-server
    node: str
    time: float
    detail: str


@dataclass(frozen=True, slots=True)
class Overlap:
    shard: Shard
    first: Interval
    second: Interval

    @property
    def seconds(self) -> float:
        return min(self.first.end, self.second.end) - max(self.first.start, self.second.start)


@dataclass(slots=True)
class _Node:
    name: str
    owned: dict[Shard, float] = field(default_factory=dict)  # shard -> start
    lease: float | None = None  # the lease in force while joined
    joined: bool = False
    intervals: list[Interval] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)

    def close(self, shard: Shard, at: float) -> None:
        start = self.owned.pop(shard)
        end = at if self.lease is None else min(at, self.lease)
        if end > start:
            self.intervals.append(Interval(self.name, shard, start, end))

    def close_all(self, at: float) -> None:
        for shard in sorted(self.owned):
            self.close(shard, at)

    def leave(self, at: float) -> None:
        self.close_all(at)
        self.lease = None
        self.joined = False


def _walk(node: str, records: Sequence[Record]) -> _Node:
    state = _Node(node)
    for rec in records:
        event = rec.get("event")
        if event not in OWNERSHIP_EVENTS:
            continue
        t = parse_time(rec["time"])
        if state.joined and state.lease is not None and t > state.lease:
            # The lease ran out before this record. A `lost` now is merely late (the interval ended
            # at the lease anyway); anything else continues past the lapse.
            if event in ("assignment", "lease"):
                state.violations.append(
                    Violation(
                        "lapse",
                        node,
                        t,
                        f"{event} record at {rec['time']} after the lease in force ran out at "
                        f"{_show(state.lease)} without a lost record in between",
                    )
                )
            state.leave(t)
            if event == "lease":
                continue  # reported as the lapse; it revives nothing
        if event == "assignment":
            granted = shards_of(rec["assigned"])
            expires = parse_time(rec["lease_expires"])
            if expires <= t:
                state.violations.append(
                    Violation("expired-grant", node, t, f"assignment at {rec['time']} with lease {expires}")
                )
            for shard in sorted(set(state.owned) - granted):
                state.close(shard, t)
            state.lease = expires if state.lease is None else max(state.lease, expires)
            state.joined = True
            for shard in sorted(granted - set(state.owned)):
                state.owned[shard] = t
        elif event == "lease":
            if not state.joined:
                state.violations.append(
                    Violation("orphan-lease", node, t, f"lease record at {rec['time']} with no assignment")
                )
                continue
            expires = parse_time(rec["lease_expires"])
            state.lease = expires if state.lease is None else max(state.lease, expires)
        else:  # lost, stopped
            state.leave(t)
    state.close_all(float("inf"))  # no more records: whatever is owned ends at the lease
    return state


def _show(t: float) -> str:
    ms = round(t * 1000)
    when = _dt.datetime.fromtimestamp(ms // 1000, _dt.UTC)
    return f"{when:%H:%M:%S}.{ms % 1000:03d}"


def ownership_intervals(node: str, records: Sequence[Record]) -> list[Interval]:
    return _walk(node, records).intervals


def record_violations(node: str, records: Sequence[Record]) -> list[Violation]:
    """Lapses, orphan leases and already-expired grants in one node's records."""
    return _walk(node, records).violations


def overlaps(intervals: Iterable[Interval]) -> list[Overlap]:
    """Every pair of intervals of different nodes on the same shard that intersect."""
    by_shard: dict[Shard, list[Interval]] = {}
    for interval in intervals:
        by_shard.setdefault(interval.shard, []).append(interval)
    found: list[Overlap] = []
    for shard, items in sorted(by_shard.items()):
        items.sort(key=lambda i: (i.start, i.end, i.node))
        for index, first in enumerate(items):
            for second in items[index + 1 :]:
                if second.start >= first.end:
                    break  # sorted by start: no later interval reaches back into `first`
                if second.node != first.node:
                    found.append(Overlap(shard, first, second))
    return found


def owners_at(intervals: Iterable[Interval], t: float) -> dict[str, set[Shard]]:
    owners: dict[str, set[Shard]] = {}
    for interval in intervals:
        if interval.contains(t):
            owners.setdefault(interval.node, set()).add(interval.shard)
    return owners


def is_disjoint_balanced_cover(
    owned: Mapping[str, set[Shard]], nodes: Sequence[str], everything: set[Shard]
) -> bool:
    sets = [owned.get(node, set()) for node in nodes]
    union: set[Shard] = set().union(*sets)
    counts = [len(s) for s in sets]
    return union == everything and sum(counts) == len(everything) and max(counts) - min(counts) <= 1


def first_cover(
    intervals: Sequence[Interval], nodes: Sequence[str], everything: set[Shard], since: float
) -> float | None:
    """The earliest instant >= `since` at which `nodes` own a disjoint, balanced cover of `everything`.

    Ownership only changes at interval boundaries, so those (and `since`) are the only candidates.
    """
    candidates = sorted({since} | {t for i in intervals for t in (i.start, i.end) if t >= since})
    for t in candidates:
        if is_disjoint_balanced_cover(owners_at(intervals, t), nodes, everything):
            return t
    return None


def watchdog_delays(node: str, records: Sequence[Record]) -> list[tuple[float, float]]:
    """For every `lost` record with reason lease_expired: (its time, how long after the lease in force
    it was written). The watchdog should make the second number tiny whatever the network does."""
    out = []
    lease: float | None = None
    for rec in records:
        event = rec.get("event")
        if event in ("assignment", "lease"):
            expires = parse_time(rec["lease_expires"])
            lease = expires if lease is None else max(lease, expires)
        elif event in ("lost", "stopped"):
            t = parse_time(rec["time"])
            if event == "lost" and rec.get("reason") == "lease_expired" and lease is not None:
                out.append((t, t - lease))
            lease = None
    return out


# -- the server's view --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipt:
    node: str
    wall: float  # on the records' clock
    processed: bool  # the server handled it (reset the session timer), answered or not


COMMIT_ACTIONS = ("UpdateCheckPoint", "CommitConsumerOffsets")


def receipts_from_log(
    entries: Iterable[Mapping[str, Any]], mono_to_wall: float, group: str | None = None
) -> list[Receipt]:
    """/_admin/log heartbeat receipts -> Receipt, their monotonic time moved onto the wall clock by
    `mono_to_wall` (wall - monotonic, read in the emulator's process; its `advance` must be 0)."""
    out = []
    for entry in entries:
        if group is not None and entry.get("group") != group:
            continue
        if entry.get("action") in COMMIT_ACTIONS:
            continue
        processed = entry.get("assigned") is not None and entry.get("error") is None
        out.append(Receipt(str(entry["consumer"]), float(entry["mono"]) + mono_to_wall, processed))
    return out


def _processed(receipts: Iterable[Receipt], node: str) -> list[float]:
    return sorted(r.wall for r in receipts if r.node == node and r.processed)


def lease_beyond_server(
    node: str, records: Sequence[Record], receipts: Sequence[Receipt], timeout: float
) -> list[Violation]:
    """Records whose `lease_expires` is later than the node's last processed heartbeat + timeout."""
    seen = _processed(receipts, node)
    found = []
    for rec in records:
        if rec.get("event") not in ("assignment", "lease"):
            continue
        t = parse_time(rec["time"])
        expires = parse_time(rec["lease_expires"])
        before = [w for w in seen if w <= t + ROUNDING]
        if not before:
            found.append(
                Violation(
                    "lease-beyond-server",
                    node,
                    t,
                    f"lease until {rec['lease_expires']} but no heartbeat received",
                )
            )
        elif expires > before[-1] + timeout:
            found.append(
                Violation(
                    "lease-beyond-server",
                    node,
                    t,
                    f"lease until {rec['lease_expires']} is {expires - before[-1] - timeout:.3f}s past "
                    f"the last receipt ({_show(before[-1])}) + timeout {timeout:g}s",
                )
            )
    return found


@dataclass(frozen=True, slots=True)
class Expiry:
    node: str
    last_receipt: float
    at: float  # last_receipt + timeout: from here the server may give the node's shards away


def server_expiries(receipts: Sequence[Receipt], timeout: float, until: float) -> list[Expiry]:
    """Every time the server dropped a node: a processed receipt followed by none for `timeout`
    (up to `until`, the end of observation)."""
    out = []
    for node in sorted({r.node for r in receipts}):
        seen = _processed(receipts, node)
        for here, following in zip(seen, [*seen[1:], None], strict=True):
            nxt = until if following is None else following
            if nxt - here >= timeout:
                out.append(Expiry(node, here, here + timeout))
    return out


@dataclass(frozen=True, slots=True)
class Gap:
    node: str
    server_expiry: float
    lease: float  # the lease the node had printed, in force at the server's expiry
    lost: float | None  # when the node wrote the `lost` that ended it (None: it never did)

    @property
    def lease_gap(self) -> float:
        """Node lease minus server expiry: negative means the node let go first (as it must)."""
        return self.lease - self.server_expiry

    @property
    def lost_gap(self) -> float | None:
        """`lost` record minus server expiry: negative means the node said so before the server let go."""
        return None if self.lost is None else self.lost - self.server_expiry


def expiry_gaps(node: str, records: Sequence[Record], expiries: Iterable[Expiry]) -> list[Gap]:
    """For each server-side expiry of `node`: the lease it had printed by then and its `lost` record.

    The lease in force is the one after the node's last lease-bearing record at or before the expiry
    (the largest `lease_expires` since it last joined); the `lost` is the first lost/stopped record
    after that one. Expiries before the node ever printed a lease are skipped.
    """
    timeline: list[tuple[float, str, float | None]] = []  # (time, event, lease in force after it)
    lease: float | None = None
    for rec in records:
        event = rec.get("event")
        if event not in OWNERSHIP_EVENTS:
            continue
        if event in ("lost", "stopped"):
            lease = None
        else:
            expires = parse_time(rec["lease_expires"])
            lease = expires if lease is None else max(lease, expires)
        timeline.append((parse_time(rec["time"]), str(event), lease))
    out = []
    for expiry in expiries:
        if expiry.node != node:
            continue
        bearing = [
            i
            for i, (t, event, _) in enumerate(timeline)
            if t <= expiry.at and event in ("assignment", "lease")
        ]
        if not bearing:
            continue
        in_force = timeline[bearing[-1]][2]
        assert in_force is not None
        lost = next((t for t, event, _ in timeline[bearing[-1] + 1 :] if event in ("lost", "stopped")), None)
        out.append(Gap(node, expiry.at, in_force, lost))
    return out


# -- checkpoints -----------------------------------------------------------------------------------------


def commit_violations(
    entries: Sequence[Mapping[str, Any]], timeout: float, group: str | None = None
) -> tuple[list[Violation], int]:
    """Every checkpoint the server accepted came from the shard's owner while that owner's session
    was alive. Checked two ways, on the server's monotonic clock:

    (a) the server's own view at that instant: the commit receipt's `owners` names the committer;
    (b) from the heartbeat log alone: the committer's last processed heartbeat before the commit is
        less than `timeout` old and listed the shard, as assigned or as still held (a shard moves
        on only once its owner's heartbeat stops listing it, so one listed then was still its).

    Returns the violations and the number of accepted commits (a check over none proves nothing).
    """
    beats: dict[str, list[tuple[float, set[Shard]]]] = {}
    for entry in entries:
        if group is not None and entry.get("group") != group:
            continue
        if entry.get("action") in COMMIT_ACTIONS or entry.get("assigned") is None or entry.get("error"):
            continue
        listed = shards_of(entry["assigned"]) | shards_of(entry.get("held") or {})
        beats.setdefault(str(entry["consumer"]), []).append((float(entry["mono"]), listed))
    found: list[Violation] = []
    accepted = 0
    for entry in entries:
        if group is not None and entry.get("group") != group:
            continue
        if entry.get("action") not in COMMIT_ACTIONS or entry.get("error") or entry.get("status") != 200:
            continue
        accepted += 1
        node, at = str(entry["consumer"]), float(entry["mono"])
        owners = entry.get("owners") or {}
        for topic, values in (entry.get("checkpoints") or {}).items():
            for shard in values:
                owner = owners.get(topic, {}).get(shard)
                if owner != node:
                    found.append(
                        Violation(
                            "commit-not-owner", node, at, f"{topic}/{shard} committed; server owner {owner}"
                        )
                    )
                before = [(t, listed) for t, listed in beats.get(node, []) if t <= at]
                if not before or at - before[-1][0] >= timeout:
                    found.append(
                        Violation("commit-after-expiry", node, at, f"{topic}/{shard}: no live session")
                    )
                elif (topic, int(shard)) not in before[-1][1]:
                    found.append(
                        Violation("commit-unlisted", node, at, f"{topic}/{shard} not in its last heartbeat")
                    )
    return found, accepted


# -- everything at once ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    intervals: list[Interval]
    overlaps: list[Overlap]
    violations: list[Violation]
    gaps: list[Gap]

    def problems(self) -> list[str]:
        lines = [
            f"overlap on {o.shard}: {o.first.node} [{_show(o.first.start)}, {_show(o.first.end)}) and "
            f"{o.second.node} [{_show(o.second.start)}, {_show(o.second.end)}) for {o.seconds:.3f}s"
            for o in self.overlaps
        ]
        lines += [f"{v.kind} at {v.node}: {v.detail}" for v in self.violations]
        return lines


def check(
    records: Mapping[str, Sequence[Record]],
    receipts: Sequence[Receipt] | None = None,
    timeout: float | None = None,
    until: float | None = None,
) -> Report:
    """All checks over one group: `records` maps node (consumer) name to its records in stdout order.

    With `receipts` and `timeout`, also the server-side checks (and, with `until`, the expiry gaps).
    """
    intervals: list[Interval] = []
    violations: list[Violation] = []
    for node, recs in sorted(records.items()):
        walked = _walk(node, recs)
        intervals += walked.intervals
        violations += walked.violations
    gaps: list[Gap] = []
    if receipts is not None and timeout is not None:
        for node, recs in sorted(records.items()):
            violations += lease_beyond_server(node, recs, receipts, timeout)
        if until is not None:
            expiries = server_expiries(receipts, timeout, until)
            for node, recs in sorted(records.items()):
                gaps += expiry_gaps(node, recs, expiries)
    return Report(intervals, overlaps(intervals), violations, gaps)
