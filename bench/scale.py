"""Part 2: one `shardbeat run` process holding 1 to 3000 consumer groups.

Per size: a fresh emulator process with that many SLS groups (30 to a logstore), the plugin started
on a config with all of them, and a steady-state window that opens once every group has joined.
Over the window: the plugin's CPU % of one core and RSS (from /proc), beats per second, lateness of
each beat against its schedule, and any `lost` record.

Lateness, and why it can be measured from outside: after its first beat (the join, which the runner
schedules apart, with the group's bootstrap), each group beats on a fixed grid
`grid_start + k * interval` of the monotonic clock (core/schedule.py), and every successful beat
yields a record whose `lease_expires` is the send instant plus (timeout - margin). So the send
instants are known to the millisecond. For one group, k of each beat after the join is its distance
from the second beat in intervals (rounded), the grid's phase is estimated as the earliest
`send - k * interval`, and a beat's lateness is `send - k * interval - phase`. The estimate measures
lateness from the group's most punctual beat (a lower bound if every beat of a group were late by the
same amount; with a dozen beats per group the most punctual one is close to on time). Beats off the
grid (retries after a failure) are left out, and counted.
"""

from __future__ import annotations

import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import procstat
from bench.emulator import EmulatorProcess, scale_fixtures
from bench.per_beat import percentile
from bench.plugin import PluginProcess, Record, config_supports, free_port, parse_time, scale_config

INTERVAL = 5.0
TIMEOUT = 15  # the group's timeout on the server: three intervals, as SLS's defaults (20 s / 60 s)
MARGIN = 1.5


@dataclass
class ScaleFigures:
    groups: int
    window_s: float
    startup_to_all_joined_s: float | None
    cpu_pct: float  # of one core, over the window
    cpu_us_per_beat: float | None  # the whole process's CPU over the window / beats in it
    rss_mb: float  # at the end of the window
    rss_peak_mb: float
    threads: int  # at the end of the window
    threads_max: int  # the most seen in the once-a-second samples of the window
    cpu_source: str  # how the CPU was read (procstat.cpu_between)
    beats_per_s: float
    expected_beats_per_s: float
    lateness_p50_ms: float | None
    lateness_p99_ms: float | None
    lateness_max_ms: float | None
    beats_measured: int
    off_grid_beats: int
    missed_ticks: int
    lost: int
    errors: int
    emulator_cpu_pct: float
    server_heartbeats_per_s: float | None
    exit_code: int | None
    stop_s: float
    metrics_scrape: dict[str, Any] | None
    notes: list[str]


def sends(records: list[tuple[float, Record]], lease_seconds: float) -> dict[str, list[float]]:
    """Group -> wall send instants of its successful beats, from assignment and lease records."""
    out: dict[str, list[float]] = defaultdict(list)
    for _, record in records:
        if record.get("event") in ("assignment", "lease") and record.get("lease_expires"):
            out[record["group"]].append(parse_time(record["lease_expires"]) - lease_seconds)
    return out


def lateness(
    sent: dict[str, list[float]], interval: float, window: tuple[float, float], failed: set[str]
) -> tuple[list[float], int, int]:
    """(lateness in seconds of each on-grid beat sent within `window`, off-grid beats, missed ticks)."""
    late: list[float] = []
    off_grid = missed = 0
    for group, times in sent.items():
        times = sorted(times)[1:]  # the join is scheduled apart from the grid
        if group in failed:  # retries after a failure are off the grid by design
            off_grid += len(times)
            continue
        if not times:
            continue
        ticks = [round((t - times[0]) / interval) for t in times]
        if len(set(ticks)) != len(ticks):
            off_grid += len(ticks) - len(set(ticks))
        phase = min(t - k * interval for t, k in zip(times, ticks, strict=True))
        for t, k in zip(times, ticks, strict=True):
            if window[0] <= t < window[1]:
                late.append(t - k * interval - phase)
        inside = [k for t, k in zip(times, ticks, strict=True) if window[0] <= t < window[1]]
        if inside:
            missed += max(inside) - min(inside) + 1 - len(set(inside))
    return late, off_grid, missed


def _scrape(port: int) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            page = answer.read()
    except OSError as exc:
        return {"served": False, "error": str(exc)[:200]}
    took = time.perf_counter() - started
    lines = page.decode().splitlines()
    samples = [line for line in lines if line and not line.startswith("#")]
    return {"served": True, "bytes": len(page), "samples": len(samples), "scrape_ms": round(took * 1000, 1)}


def run_size(groups: int, window: float, workroot: Path) -> ScaleFigures:
    notes: list[str] = []
    lease_seconds = TIMEOUT - MARGIN
    workdir = Path(tempfile.mkdtemp(prefix=f"scale-{groups}-", dir=workroot))
    with EmulatorProcess(scale_fixtures(groups, TIMEOUT), workdir) as emulator:
        config = scale_config(emulator.url, groups, INTERVAL, TIMEOUT, MARGIN, workdir)
        metrics_port = None
        if config_supports("metrics"):
            metrics_port = free_port()
            config["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
        plugin = PluginProcess(config, workdir)
        try:
            joined_in = max(30.0, groups / 20)

            def all_joined(records: list[tuple[float, Record]]) -> bool:
                return len({r["group"] for _, r in records if r.get("event") == "assignment"}) >= groups

            ok = plugin.wait_records(all_joined, joined_in)
            joined_after = time.time() - plugin.started_wall if ok else None
            if not ok:
                notes.append(f"not every group joined within {joined_in:.0f} s")
            time.sleep(1.0)  # let the join burst's records drain before the window opens
            start_wall, start_mono = time.time(), time.monotonic()
            first, emu_first = plugin.sample(), procstat.sample(emulator.proc.pid)
            peak = first.hwm_mb if first else 0.0
            most_threads = first.threads if first else 0
            while time.monotonic() - start_mono < window and plugin.proc.poll() is None:
                time.sleep(min(1.0, window - (time.monotonic() - start_mono)))
                now = plugin.sample()
                if now is not None:
                    peak = max(peak, now.hwm_mb)
                    most_threads = max(most_threads, now.threads)
            end_mono = time.monotonic()
            last, emu_last = plugin.sample(), procstat.sample(emulator.proc.pid)
            scrape = _scrape(metrics_port) if metrics_port is not None else None
            counted = (start_wall, start_wall + window)  # a whole number of intervals: every group beats
            answered = _server_count(emulator, *counted)  # the same number of times in it when on time
        finally:
            exit_code, stop_s = plugin.stop()
        if plugin.proc.returncode not in (0, None) or first is None or last is None:
            notes.append("plugin exited early: " + " | ".join(plugin.stderr[-5:]))
        records = plugin.snapshot()
    span = end_mono - start_mono
    cpu, cpu_source = procstat.cpu_between(first, last) if last and first else (float("nan"), "n/a")
    failed = {r["group"] for _, r in records if r.get("event") == "error" and "group" in r}
    sent = sends(records, lease_seconds)
    late, off_grid, missed = lateness(sent, INTERVAL, counted, failed)
    beats = len(late) + sum(1 for g in failed for t in sent.get(g, []) if counted[0] <= t < counted[1])
    # CPU per beat divides by the beats the emulator answered in the window: a runner that writes
    # fewer per-beat records (coalesced or dropped `lease` records) is still judged per beat sent.
    per_beat_divisor = answered if answered else beats
    if answered is not None and abs(answered - beats) > max(2, beats // 50):
        notes.append(f"records show {beats} beats in the window, the emulator answered {answered}")
    # `lost` with reason "stopped" is what a clean stop writes for every group: not a lease lost.
    lost = sum(1 for _, r in records if r.get("event") == "lost" and r.get("reason") != "stopped")
    errors = sum(1 for _, r in records if r.get("event") == "error")
    logged = plugin.stderr_before(plugin.stopping_at)
    if logged:
        notes.append(f"{len(logged)} stderr line(s) before the stop, first: {logged[0][:160]}")
    return ScaleFigures(
        groups=groups,
        window_s=round(span, 1),
        startup_to_all_joined_s=round(joined_after, 2) if joined_after is not None else None,
        cpu_pct=cpu / span * 100,
        # Below a few beats a second the figure is the idle cost spread over them: not shown.
        cpu_us_per_beat=cpu / per_beat_divisor * 1e6 if per_beat_divisor and groups / INTERVAL >= 2 else None,
        rss_mb=last.rss_mb if last else float("nan"),
        rss_peak_mb=peak,
        threads=last.threads if last else 0,
        threads_max=max(most_threads, last.threads if last else 0),
        cpu_source=cpu_source,
        beats_per_s=beats / window,
        expected_beats_per_s=groups / INTERVAL,
        lateness_p50_ms=percentile(late, 50) * 1000 if late else None,
        lateness_p99_ms=percentile(late, 99) * 1000 if late else None,
        lateness_max_ms=max(late) * 1000 if late else None,
        beats_measured=len(late),
        off_grid_beats=off_grid,
        missed_ticks=missed,
        lost=lost,
        errors=errors,
        emulator_cpu_pct=procstat.cpu_between(emu_first, emu_last)[0] / span * 100,
        server_heartbeats_per_s=answered / window if answered is not None else None,
        exit_code=exit_code,
        stop_s=round(stop_s, 2),
        metrics_scrape=scrape,
        notes=notes,
    )


def _server_count(emulator: EmulatorProcess, start: float, end: float) -> int | None:
    """Heartbeats the emulator answered within the window (a cross-check of the records' count)."""
    try:
        receipts = emulator.receipts()
    except OSError:
        return None
    if not receipts or receipts[0]["wall"] >= start:  # its log keeps the newest 100000: cut short
        return None
    inside = [r for r in receipts if start <= r["wall"] < end and r["status"] == 200]
    return len(inside)


def run(sizes: list[tuple[int, float]], workroot: Path) -> list[dict[str, Any]]:
    out = []
    for groups, window in sizes:
        started = time.perf_counter()
        figures = run_size(groups, window, workroot)
        row = asdict(figures)
        row["took_s"] = round(time.perf_counter() - started, 1)
        out.append(row)
    return out


def summary(rows: list[dict[str, Any]]) -> str:
    """One line per size, for the console while the benchmark runs."""
    return "\n".join(
        f"{r['groups']:>5} groups: cpu {r['cpu_pct']:.1f}%  rss {r['rss_mb']:.1f} MB  "
        f"beats/s {r['beats_per_s']:.1f}/{r['expected_beats_per_s']:.1f}  "
        f"p99 late {_ms(r['lateness_p99_ms'])} ms  "
        f"lost {r['lost']}  (took {r['took_s']} s)"
        for r in rows
    )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
