"""The machine, the targets of issue 6 (PASS/MISS, never a failed build), and the markdown table."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
    }


def _commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}{' (modified)' if dirty else ''}" if head else None


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    measured: str
    passed: bool | None  # None: not measured in this run


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(results: dict[str, Any]) -> list[Target]:
    out: list[Target] = []
    per_beat = results.get("per_beat")
    if per_beat:
        rows = {(c["provider"], c["kind"]): c for c in per_beat["clients"]}
        for provider in ("sls", "cls"):
            mine = rows.get((provider, "shardbeat"))
            floor = rows.get((provider, "floor"))
            sdk = rows.get((provider, "sdk"))
            label = provider.upper()
            to_floor = _ratio(mine and mine["cpu_us"], floor and floor["cpu_us"])
            out.append(_limit(f"{label} CPU per beat <= 1.5x the floor", to_floor, 1.5, "x"))
            to_sdk = _ratio(mine and mine["cpu_us"], sdk and sdk["cpu_us"])
            out.append(_limit(f"{label} CPU per beat <= 0.4x the official SDK", to_sdk, 0.4, "x"))
    scale = {row["groups"]: row for row in results.get("scale", [])}
    big = scale.get(1000)
    if big:
        out.append(_limit("1000 groups @ 5 s: CPU < 25% of one core", big["cpu_pct"], 25.0, "%", strict=True))
        out.append(
            _limit(
                "1000 groups @ 5 s: p99 lateness < 50 ms", big["lateness_p99_ms"], 50.0, " ms", strict=True
            )
        )
        out.append(Target("1000 groups @ 5 s: no lease lost", f"{big['lost']} lost", big["lost"] == 0))
        out.append(_limit("RSS < 60 MB at 1000 groups", big["rss_mb"], 60.0, " MB", strict=True))
    startup = results.get("startup")
    if startup:
        out.append(_limit("RSS < 35 MB idle (one group)", startup["idle_rss_mb"], 35.0, " MB", strict=True))
        first = startup["first_record_ms"]["median"]
        out.append(_limit("first record < 400 ms after exec (median)", first, 400.0, " ms", strict=True))
    return out


def _limit(name: str, value: float | None, limit: float, unit: str, strict: bool = False) -> Target:
    if value is None:
        return Target(name, "not measured", None)
    shown = f"{value:.2f}{unit}" if unit == "x" else f"{value:.1f}{unit}"
    return Target(name, shown, value < limit if strict else value <= limit)


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "MISS", None: "n/a"}[passed]


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# shardbeat benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['implementation']} {m['python']}; "
        f"{m['os']}. Run {m['date']}, commit {m['commit']}, {results['took_s']:.0f} s in all"
        + (" (quick mode: small samples, not for quoting)" if results.get("quick") else "")
        + ".",
        "",
        "## Targets (issue 6)",
        "",
        "| target | measured | result |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {t.name} | {t.measured} | {verdict(t.passed)} |" for t in targets(results)]
    per_beat = results.get("per_beat")
    if per_beat:
        lines += _per_beat_table(per_beat)
    if results.get("scale"):
        lines += _scale_table(results["scale"])
    if results.get("startup"):
        lines += _startup_table(results["startup"])
    if per_beat and per_beat.get("stages_cpu_us"):
        lines += [
            "",
            "### Where one beat's CPU goes (no network, warm loop)",
            "",
            "| step | CPU us |",
            "| --- | ---: |",
        ]
        for step, cost in per_beat["stages_cpu_us"].items():
            lines.append(f"| {step} | {cost if isinstance(cost, str) else f'{cost:.1f}'} |")
    lines += ["", "How each figure is measured: bench/README.md.", ""]
    return "\n".join(lines)


def _per_beat_table(per_beat: dict[str, Any]) -> list[str]:
    clients = per_beat["clients"]
    floors = {c["provider"]: c["cpu_us"] for c in clients if c["kind"] == "floor"}
    sdks = {c["provider"]: c["cpu_us"] for c in clients if c["kind"] == "sdk"}
    lines = [
        "",
        f"## 1. Per heartbeat ({per_beat['beats_per_client']} beats per client in {per_beat['rounds']} "
        "interleaved rounds, keep-alive, emulator in another process)",
        "",
        "| client | CPU us/beat | x floor | x SDK | wall p50 us | wall p99 us |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in clients:
        to_floor = _ratio(c["cpu_us"], floors.get(c["provider"]))
        to_sdk = _ratio(c["cpu_us"], sdks.get(c["provider"])) if c["kind"] != "sdk" else None
        name = f"**{c['name']}**" if c["kind"] == "shardbeat" else c["name"]
        lines.append(
            f"| {name} | {c['cpu_us']:.0f} | {_f(to_floor, 2)} | {_f(to_sdk, 2)} | "
            f"{c['wall_p50_us']:.0f} | {c['wall_p99_us']:.0f} |"
        )
    for name, why in per_beat.get("skipped", {}).items():
        lines.append(f"| {name} | skipped: {why} | | | | |")
    return lines


def _scale_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## 2. One process, many groups (SLS, interval 5 s, group timeout 15 s)",
        "",
        "| groups | window | CPU % of one core | CPU us/beat (whole process) | RSS MB (peak) | threads "
        "| beats/s (expected) | lateness p50 / p99 / max ms | lost | emulator CPU % |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['groups']} | {r['window_s']:.0f} s | {r['cpu_pct']:.1f} | {_f(r['cpu_us_per_beat'], 0)} | "
            f"{r['rss_mb']:.1f} ({r['rss_peak_mb']:.1f}) | {r['threads']} | "
            f"{r['beats_per_s']:.1f} ({r['expected_beats_per_s']:.1f}) | "
            f"{_f(r['lateness_p50_ms'])} / {_f(r['lateness_p99_ms'])} / {_f(r['lateness_max_ms'])} | "
            f"{r['lost']} | {r['emulator_cpu_pct']:.1f} |"
        )
    notes = [f"{r['groups']} groups: {n}" for r in rows for n in r["notes"]]
    scrapes = [(r["groups"], r["metrics_scrape"]) for r in rows if r.get("metrics_scrape")]
    for groups, scrape in scrapes:
        if scrape["served"]:
            notes.append(
                f"{groups} groups: /metrics scraped at the end of the window: {scrape['samples']} samples, "
                f"{scrape['bytes'] / 1024:.0f} KiB, {scrape['scrape_ms']} ms"
            )
    if scrapes and not any(scrape["served"] for _, scrape in scrapes):
        notes.append("metrics.listen was configured but /metrics was not served by this build")
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    return lines


def _startup_table(s: dict[str, Any]) -> list[str]:
    first = s["first_record_ms"]
    largest = ", ".join(f"{k} {v}" for k, v in list(s["imports"]["largest_ms"].items())[:6])
    return [
        "",
        "## 3. Start-up and idle",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| exec to first record (`{s['command']}`), median of {s['runs']} | {_f(first['median'])} ms "
        f"(min {_f(first['min'])}, max {_f(first['max'])}) |",
        f"| `python -c pass` on this machine | {s['python_startup_ms']} ms |",
        f"| imports until the first record (under -X importtime, which slows them) | "
        f"{s['imports']['total_ms']} ms; largest: {largest} |",
        f"| RSS of an idle one-group plugin, {s['idle_after_s']:.0f} s after its first record | "
        f"{_f(s['idle_rss_mb'])} MB, {s['idle_threads']} threads |",
    ]


def write(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "targets": [_target_json(t) for t in targets(results)]}
    md, js = out / "latest.md", out / "latest.json"
    md.write_text(markdown(results))
    js.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return md, js


def _target_json(t: Target) -> dict[str, Any]:
    return {"name": t.name, "measured": t.measured, "result": verdict(t.passed)}


def console(results: dict[str, Any]) -> str:
    return "\n".join(f"{verdict(t.passed):4s}  {t.name}: {t.measured}" for t in targets(results))
