"""The machine, and the report: targets (PASS/MISS) and tables, each figure beside the baseline's."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.baseline import ARROW, MISSING, client_row, describe, get, number, pair, scale_row, texts
from bench.floor import sls_floor
from bench.targets import Target, ratio, targets, verdict

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


def markdown(results: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    m = results["machine"]
    lines = [
        "# shardbeat benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['implementation']} {m['python']}; "
        f"{m['os']}. Run {m['date']}, commit {m['commit']}, {results['took_s']:.0f} s in all"
        + (" (quick mode: small samples, not for quoting)" if results.get("quick") else "")
        + ".",
    ]
    if base is not None:
        lines += ["", *describe(base, m)]
    lines += _targets_tables(results, base)
    per_beat = results.get("per_beat")
    if per_beat:
        lines += _per_beat_table(per_beat, base)
    if results.get("scale"):
        lines += _scale_table(results, base)
    if results.get("startup"):
        lines += _startup_table(results["startup"], (base or {}).get("startup"))
    if per_beat and per_beat.get("stages_cpu_us"):
        lines += _stages_table(
            per_beat["stages_cpu_us"], ((base or {}).get("per_beat") or {}).get("stages_cpu_us")
        )
    lines += ["", "How each figure is measured: bench/README.md.", ""]
    return "\n".join(lines)


def _targets_tables(results: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    now = targets(results, base)
    before = {t.name: t for t in targets(base) if not t.against_baseline} if base is not None else {}
    lines: list[str] = []
    for issue in (6, 10):
        mine = [t for t in now if t.issue == issue]
        if not mine:
            continue
        lines += ["", f"## Targets (issue {issue})", ""]
        if base is not None:
            lines += ["| target | before | now | result |", "| --- | --- | --- | --- |"]
            for t in mine:
                old = before.get(t.name)
                shown = f"{old.measured} ({verdict(old.passed)})" if old else ""
                lines.append(f"| {t.name} | {shown} | {t.measured} | {verdict(t.passed)} |")
        else:
            lines += ["| target | measured | result |", "| --- | --- | --- |"]
            lines += [f"| {t.name} | {t.measured} | {verdict(t.passed)} |" for t in mine]
    return lines


def _per_beat_table(per_beat: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    clients = per_beat["clients"]
    floors = {c["provider"]: c["cpu_us"] for c in clients if c["kind"] == "floor"}
    sdks = {c["provider"]: c["cpu_us"] for c in clients if c["kind"] == "sdk"}
    old_clients = ((base or {}).get("per_beat") or {}).get("clients", [])
    old_floors = {c["provider"]: c["cpu_us"] for c in old_clients if c["kind"] == "floor"}
    old_sdks = {c["provider"]: c["cpu_us"] for c in old_clients if c["kind"] == "sdk"}
    lines = [
        "",
        f"## 1. Per heartbeat ({per_beat['beats_per_client']} beats per client in {per_beat['rounds']} "
        "interleaved rounds, keep-alive, emulator in another process)",
        "",
        "| client | CPU us/beat | x floor | x SDK | wall p50 us | wall p99 us |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in clients:
        old = client_row(base, c)
        to_floor = ratio(c["cpu_us"], floors.get(c["provider"]))
        to_sdk = ratio(c["cpu_us"], sdks.get(c["provider"])) if c["kind"] != "sdk" else None
        old_floor = old_sdk = MISSING
        if old is not None:
            old_floor = ratio(old["cpu_us"], old_floors.get(old["provider"]))
            old_sdk = ratio(old["cpu_us"], old_sdks.get(old["provider"])) if old["kind"] != "sdk" else None
        name = f"**{c['name']}**" if c["kind"] == "shardbeat" else c["name"]
        lines.append(
            f"| {name} | {pair(get(old, 'cpu_us'), c['cpu_us'], 0)} | {pair(old_floor, to_floor, 2)} | "
            f"{pair(old_sdk, to_sdk, 2)} | {pair(get(old, 'wall_p50_us'), c['wall_p50_us'], 0)} | "
            f"{pair(get(old, 'wall_p99_us'), c['wall_p99_us'], 0)} |"
        )
    for name, why in per_beat.get("skipped", {}).items():
        lines.append(f"| {name} | skipped: {why} | | | | |")
    return lines


def _lateness(row: dict[str, Any] | None) -> str | None:
    if row is None:
        return None
    keys = ("lateness_p50_ms", "lateness_p99_ms", "lateness_max_ms")
    return " / ".join(number(row.get(k)) for k in keys)


def _scale_table(results: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    rows: list[dict[str, Any]] = results["scale"]
    floor = sls_floor(results)
    old_floor = sls_floor(base) if base is not None else None
    lines = [
        "",
        "## 2. One process, many groups (SLS, interval 5 s, group timeout 15 s)",
        "",
        "| groups | window | CPU % of one core | CPU us/beat (whole process) | x floor | RSS MB (peak) "
        "| threads (max) | beats/s (expected) | lateness p50 / p99 / max ms | lost | emulator CPU % |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        old = scale_row(base, r["groups"])
        x_floor = ratio(r["cpu_us_per_beat"], floor and floor[0])
        old_x = MISSING if old is None else ratio(old["cpu_us_per_beat"], old_floor and old_floor[0])
        rss = f"{r['rss_mb']:.1f} ({r['rss_peak_mb']:.1f})"
        old_rss = None if old is None else f"{old['rss_mb']:.1f} ({old['rss_peak_mb']:.1f})"
        threads = f"{r['threads']} ({r.get('threads_max', r['threads'])})"
        old_threads = None if old is None else f"{old['threads']} ({old.get('threads_max', old['threads'])})"
        beats = f"{r['beats_per_s']:.1f} ({r['expected_beats_per_s']:.1f})"
        old_beats = None if old is None else f"{old['beats_per_s']:.1f}"
        lines.append(
            f"| {r['groups']} | {r['window_s']:.0f} s | {pair(get(old, 'cpu_pct'), r['cpu_pct'])} | "
            f"{pair(get(old, 'cpu_us_per_beat'), r['cpu_us_per_beat'], 0)} | {pair(old_x, x_floor, 2)} | "
            f"{texts(old_rss, rss)} | {texts(old_threads, threads)} | {texts(old_beats, beats)} | "
            f"{texts(_lateness(old), _lateness(r) or '')} | {pair(get(old, 'lost'), r['lost'], 0)} | "
            f"{pair(get(old, 'emulator_cpu_pct'), r['emulator_cpu_pct'])} |"
        )
    notes = []
    if floor is not None:
        notes.append(
            f"x floor: CPU us/beat over the SLS floor of the same run ({floor[0]:.0f} us, {floor[1]})"
        )
    notes += [f"{r['groups']} groups: {n}" for r in rows for n in r["notes"]]
    notes += [
        f"CPU read from the {source}" for source in sorted({r.get("cpu_source", "") for r in rows} - {""})
    ]
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


def _startup_table(s: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    first = s["first_record_ms"]
    old_first = old["first_record_ms"] if old else None
    largest = ", ".join(f"{k} {v}" for k, v in list(s["imports"]["largest_ms"].items())[:6])

    def spread(f: dict[str, Any]) -> str:
        return f"{number(f['median'])} ms (min {number(f['min'])}, max {number(f['max'])})"

    def ms(value: Any) -> str:
        return f"{value} ms"

    def idle(d: dict[str, Any]) -> str:
        return f"{number(d['idle_rss_mb'])} MB, {d['idle_threads']} threads"

    return [
        "",
        "## 3. Start-up and idle",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| exec to first record (`{s['command']}`), median of {s['runs']} | "
        f"{texts(old_first and spread(old_first), spread(first))} |",
        f"| `python -c pass` on this machine | "
        f"{texts(old and ms(old['python_startup_ms']), ms(s['python_startup_ms']))} |",
        f"| imports until the first record (under -X importtime, which slows them) | "
        f"{texts(old and ms(old['imports']['total_ms']), ms(s['imports']['total_ms']))}; "
        f"largest now: {largest} |",
        f"| RSS of an idle one-group plugin, {s['idle_after_s']:.0f} s after its first record | "
        f"{texts(old and idle(old), idle(s))} |",
        *([f"| bytecode of the children | {s['bytecode']} |"] if "bytecode" in s else []),
    ]


def _stages_table(stages: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    lines = [
        "",
        "### Where one beat's CPU goes (no network, warm loop)",
        "",
        "| step | CPU us |",
        "| --- | ---: |",
    ]
    for step, cost in stages.items():
        before = (old or {}).get(step, MISSING)
        if isinstance(cost, str) or isinstance(before, str):
            shown = texts(
                None if before is MISSING else before, cost if isinstance(cost, str) else f"{cost:.1f}"
            )
        else:
            shown = pair(before, cost)
        lines.append(f"| {step} | {shown} |")
    return lines


def write(
    results: dict[str, Any], out: Path, base: dict[str, Any] | None = None, stem: str = "latest"
) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "targets": [_target_json(t) for t in targets(results, base)]}
    if base is not None:
        results["baseline"] = {"file": base["_path"], "commit": base["machine"]["commit"]}
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    js.write_text(json.dumps(results, indent=2, default=str) + "\n")  # the figures first, whatever follows
    md.write_text(markdown(results, base))
    return md, js


def _target_json(t: Target) -> dict[str, Any]:
    return {"issue": t.issue, "name": t.name, "measured": t.measured, "result": verdict(t.passed)}


def console(results: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    before = {t.name: t.measured for t in targets(base) if not t.against_baseline} if base else {}
    return "\n".join(
        f"{verdict(t.passed):4s}  {t.name}: "
        + (f"{before[t.name]}{ARROW}{t.measured}" if t.name in before else t.measured)
        for t in targets(results, base)
    )
