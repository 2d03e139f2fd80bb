"""The targets of issues 6 and 10 as PASS/MISS lines: a verdict on the figures, never a failed build.

A target whose figure this run did not measure is left out (a partial run judges only what it ran);
one that needs a figure the run lacks (the floor, a baseline) says "n/a" and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.floor import sls_floor

# RSS of the same code moves by a few hundred KB from run to run (allocator arenas, where the last
# collection fell, what the join burst touched); 1 MB is above that noise and well below what a
# design change costs (a thousand connection objects, a second interpreter-level structure per group).
RSS_TOLERANCE_MB = 1.0
FLOOR_FACTOR = 2.0  # issue 10: whole-process CPU per beat at most twice the http.client floor
ISSUE10_SIZES = (100, 1000, 3000)


@dataclass(frozen=True, slots=True)
class Target:
    issue: int
    name: str
    measured: str
    passed: bool | None  # None: not measured in this run
    against_baseline: bool = False  # judged against the baseline's figure, not a fixed limit


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "MISS", None: "n/a"}[passed]


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(results: dict[str, Any], baseline: dict[str, Any] | None = None) -> list[Target]:
    return issue6(results) + issue10(results, baseline)


def issue6(results: dict[str, Any]) -> list[Target]:
    out: list[Target] = []
    per_beat = results.get("per_beat")
    if per_beat:
        rows = {(c["provider"], c["kind"]): c for c in per_beat["clients"]}
        for provider in ("sls", "cls"):
            mine = rows.get((provider, "shardbeat"))
            floor = rows.get((provider, "floor"))
            sdk = rows.get((provider, "sdk"))
            label = provider.upper()
            to_floor = ratio(mine and mine["cpu_us"], floor and floor["cpu_us"])
            out.append(_limit(6, f"{label} CPU per beat <= 1.5x the floor", to_floor, 1.5, "x"))
            to_sdk = ratio(mine and mine["cpu_us"], sdk and sdk["cpu_us"])
            out.append(_limit(6, f"{label} CPU per beat <= 0.4x the official SDK", to_sdk, 0.4, "x"))
    scale = {row["groups"]: row for row in results.get("scale", [])}
    big = scale.get(1000)
    if big:
        out.append(_limit(6, "1000 groups @ 5 s: CPU < 25% of one core", big["cpu_pct"], 25.0, "%", True))
        p99 = big["lateness_p99_ms"]
        out.append(_limit(6, "1000 groups @ 5 s: p99 lateness < 50 ms", p99, 50.0, " ms", True))
        out.append(Target(6, "1000 groups @ 5 s: no lease lost", f"{big['lost']} lost", big["lost"] == 0))
        out.append(_limit(6, "RSS < 60 MB at 1000 groups", big["rss_mb"], 60.0, " MB", True))
    startup = results.get("startup")
    if startup:
        out.append(_limit(6, "RSS < 35 MB idle (one group)", startup["idle_rss_mb"], 35.0, " MB", True))
        first = startup["first_record_ms"]["median"]
        out.append(_limit(6, "first record < 400 ms after exec (median)", first, 400.0, " ms", True))
    return out


def issue10(results: dict[str, Any], baseline: dict[str, Any] | None) -> list[Target]:
    out: list[Target] = []
    scale = {row["groups"]: row for row in results.get("scale", [])}
    floor = sls_floor(results)
    for groups in ISSUE10_SIZES:
        row = scale.get(groups)
        if row is None:
            continue
        name = f"{groups} groups: whole-process CPU per beat <= {FLOOR_FACTOR:g}x the floor (same run)"
        per_beat = row["cpu_us_per_beat"]
        if floor is None or per_beat is None:
            missing = "no floor in this run" if floor is None else "no beats in the window"
            out.append(Target(10, name, f"n/a: {missing}", None))
            continue
        x = per_beat / floor[0]
        shown = f"{x:.2f}x ({per_beat:.0f} / {floor[0]:.0f} us)"
        out.append(Target(10, name, shown, x <= FLOOR_FACTOR))
    if 1000 in scale:
        out.append(
            _limit(10, "1000 groups @ 5 s: CPU < 5% of one core", scale[1000]["cpu_pct"], 5.0, "%", True)
        )
    if 3000 in scale:
        p99 = scale[3000]["lateness_p99_ms"]
        out.append(_limit(10, "3000 groups @ 5 s: p99 lateness <= 5 ms", p99, 5.0, " ms"))
    out += _rss_against(results, baseline)
    startup = results.get("startup")
    if startup:
        first = startup["first_record_ms"]["median"]
        out.append(_limit(10, "first record <= 150 ms after exec (median)", first, 150.0, " ms"))
    return out


def _rss_against(results: dict[str, Any], baseline: dict[str, Any] | None) -> list[Target]:
    """RSS no worse than before, per figure both runs measured, within RSS_TOLERANCE_MB."""
    pairs: list[tuple[str, float | None, float | None]] = []
    before = {row["groups"]: row for row in (baseline or {}).get("scale", [])}
    for row in results.get("scale", []):
        old = before.get(row["groups"])
        at = f"at {row['groups']} group{'s' if row['groups'] != 1 else ''}"
        pairs.append((at, row["rss_mb"], old and old["rss_mb"]))
    if results.get("startup"):
        old_idle = ((baseline or {}).get("startup") or {}).get("idle_rss_mb")
        pairs.append(("idle (one group)", results["startup"]["idle_rss_mb"], old_idle))
    out = []
    for label, new, old in pairs:
        name = f"RSS {label} no worse than before (+{RSS_TOLERANCE_MB:g} MB)"
        if baseline is None:
            out.append(Target(10, name, "n/a: no baseline", None, True))
        elif new is None or old is None:
            missing = "n/a: not in the baseline" if old is None else "not measured"
            out.append(Target(10, name, missing, None, True))
        else:
            shown = f"{new:.1f} MB ({new - old:+.1f} MB)"
            out.append(Target(10, name, shown, new - old <= RSS_TOLERANCE_MB, True))
    return out


def _limit(
    issue: int, name: str, value: float | None, limit: float, unit: str, strict: bool = False
) -> Target:
    if value is None:
        return Target(issue, name, "not measured", None)
    shown = f"{value:.2f}{unit}" if unit == "x" else f"{value:.1f}{unit}"
    return Target(issue, name, shown, value < limit if strict else value <= limit)
