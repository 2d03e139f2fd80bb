"""The benchmark (bench/, `make bench`) kept from rotting: its per-beat part end to end with a tiny
sample, the arithmetic of the scale part (lateness against a fixed grid) on made-up records, the
whole-process CPU reading, and the report's targets and before -> now figures on made-up results."""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def bench(module: str) -> ModuleType:
    """bench/ sits at the repository root, outside the installed package."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module(f"bench.{module}")


@pytest.mark.slow
def test_per_beat_part_runs_and_writes_its_table(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench", "--quick", "--only", "per_beat", "--beats", "20"]
    # A session of its own: a run cut off by the deadline (generous: 33 s on a loaded machine) takes
    # its emulator and plugin children with it instead of leaving them running.
    proc = subprocess.Popen(
        [*argv, "--out", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert not (tmp_path / "latest.json").exists()  # a partial run never overwrites the quoted figures
    results = json.loads((tmp_path / "partial.json").read_text())
    rows = {(c["provider"], c["kind"]): c for c in results["per_beat"]["clients"]}
    for provider in ("sls", "cls"):
        for kind in ("shardbeat", "floor"):
            row = rows[(provider, kind)]
            assert row["beats"] == 20 and row["cpu_us"] > 0 and row["wall_p99_us"] >= row["wall_p50_us"] > 0
    sdk_installed = importlib.util.find_spec("aliyun") is not None
    assert (("sls", "sdk") in rows) == sdk_installed
    stages = results["per_beat"]["stages_cpu_us"]
    assert all(isinstance(v, float) for v in stages.values()), stages  # an "n/a" means an API moved
    table = (tmp_path / "partial.md").read_text()
    assert "| **shardbeat SLS** | 134 → " in table and "| **shardbeat CLS** | 156 → " in table  # the baseline
    targets = {t["name"]: t["result"] for t in results["targets"]}
    assert targets["SLS CPU per beat <= 1.5x the floor"] in ("PASS", "MISS")
    assert results["baseline"]["commit"] == "be58c49"


def lease_record(group: str, sent: float, lease_seconds: float) -> dict[str, Any]:
    return {"event": "lease", "group": group, "lease_expires": _rfc3339(sent + lease_seconds)}


def _rfc3339(epoch: float) -> str:
    ms = round(epoch * 1000)
    t = dt.datetime.fromtimestamp(ms // 1000, dt.UTC)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def test_send_instants_come_back_from_lease_expires() -> None:
    scale = bench("scale")
    records = [(0.0, lease_record("g", 1_700_000_000.25, 13.5)), (0.0, {"event": "stopped", "group": "g"})]
    sent = scale.sends(records, 13.5)
    assert list(sent) == ["g"] and sent["g"][0] == pytest.approx(1_700_000_000.25, abs=0.001)


def test_lateness_is_measured_from_the_grid_of_each_group() -> None:
    scale = bench("scale")
    interval, t0 = 5.0, 1_000.0
    late = [0.0, 0.002, 0.040, 0.001, 0.003]
    join = t0 - 3.7  # the first beat (the join) is scheduled apart from the grid
    sent = {
        "on-time": [join, *(t0 + 0.3 + k * interval + d for k, d in enumerate(late))],
        # tick 2 missed entirely (a beat late by more than an interval skips it)
        "skipped": [join, *(t0 + 1.1 + k * interval for k in (0, 1, 3, 4))],
        "failing": [join, t0 + 2.0, t0 + 2.4, t0 + 7.0],  # retries are off the grid by design
    }
    window = (t0, t0 + 5 * interval)
    measured, off_grid, missed = scale.lateness(sent, interval, window, failed={"failing"})
    assert sorted(measured) == pytest.approx(sorted([*late, 0.0, 0.0, 0.0, 0.0]))
    assert off_grid == 3
    assert missed == 1
    # Beats outside the window are not counted, but still anchor the grid's phase.
    inside, _, _ = scale.lateness({"on-time": sent["on-time"]}, interval, (t0 + 9, t0 + 16), set())
    assert inside == pytest.approx([0.040, 0.001])


def test_targets_pass_and_miss_on_the_issue_limits() -> None:
    targets = bench("targets")
    row = {"groups": 1000, "cpu_pct": 24.9, "lateness_p99_ms": 50.0, "lost": 0, "rss_mb": 59.0}
    verdicts = {t.name: targets.verdict(t.passed) for t in targets.issue6({"scale": [row]})}
    assert verdicts == {
        "1000 groups @ 5 s: CPU < 25% of one core": "PASS",
        "1000 groups @ 5 s: p99 lateness < 50 ms": "MISS",  # the limit itself is a miss ("under")
        "1000 groups @ 5 s: no lease lost": "PASS",
        "RSS < 60 MB at 1000 groups": "PASS",
    }


def test_process_cpu_counts_threads_that_exited_between_samples() -> None:
    """The scale part reads a child's CPU from outside; threads that come and go (an event loop's
    helpers) must count. Read on this very process, its own clock is the reference."""
    procstat = bench("procstat")
    burned: list[int] = []

    def burn() -> None:
        started = time.thread_time_ns()
        while time.thread_time_ns() - started < 20_000_000:
            pass
        burned.append(time.thread_time_ns())

    own_before = time.process_time_ns()
    first = procstat.sample(os.getpid())
    for _ in range(3):  # one after the other: each thread is gone before the next starts
        worker = threading.Thread(target=burn)
        worker.start()
        worker.join()
    last = procstat.sample(os.getpid())
    own_after = time.process_time_ns()
    assert first.cpu_ns is not None and last.cpu_ns is not None
    assert sum(burned) <= last.cpu_ns - first.cpu_ns <= own_after - own_before
    seconds, source = procstat.cpu_between(first, last)
    assert seconds == (last.cpu_ns - first.cpu_ns) / 1e9 and "all threads" in source
    # Ticks stand in when the clock cannot be read (another kernel): still the whole process.
    coarse = procstat.ProcSample(first.cpu, None, 0.0, 0.0, 1)
    assert procstat.cpu_between(coarse, last) == (last.cpu - first.cpu, procstat.cpu_between(coarse, last)[1])


def _scale_row(groups: int, cpu_pct: float, per_beat: float, rss: float, p99: float) -> dict[str, Any]:
    return {
        "groups": groups, "window_s": 60.0, "cpu_pct": cpu_pct, "cpu_us_per_beat": per_beat, "rss_mb": rss,
        "rss_peak_mb": rss, "threads": 4, "threads_max": 6, "beats_per_s": groups / 5,
        "expected_beats_per_s": groups / 5, "lateness_p50_ms": 0.0, "lateness_p99_ms": p99,
        "lateness_max_ms": 9.0, "lost": 0, "emulator_cpu_pct": 9.0, "notes": [],
    }  # fmt: skip


def _results(scale: list[dict[str, Any]], **parts: Any) -> dict[str, Any]:
    machine = {"cpu": "x", "cores": 2, "memory_gb": 1, "python": "3.11", "implementation": "CPython",
               "os": "Linux", "date": "today", "commit": "abc1234"}  # fmt: skip
    return {"machine": machine, "took_s": 1.0, "scale": scale, **parts}


def test_issue10_targets_judge_the_whole_process_against_the_floor_of_the_same_run() -> None:
    targets = bench("targets")
    baseline = bench("baseline")
    before = _results([_scale_row(1000, 13.5, 675.0, 36.2, 1.0)], startup=None)
    before["_path"] = "before.json"
    floor = {"cpu_us": 120.0, "beats": 1000}  # the short floor of a `--only scale` run
    now = _results(
        [_scale_row(100, 0.5, 241.0, 31.0, 1.0), _scale_row(1000, 4.99, 239.0, 37.2, 2.0),
         _scale_row(3000, 14.0, 230.0, 40.0, 5.0)],
        floor=floor,
    )  # fmt: skip
    verdicts = {t.name: targets.verdict(t.passed) for t in targets.issue10(now, before)}
    assert verdicts == {
        "100 groups: whole-process CPU per beat <= 2x the floor (same run)": "MISS",  # 2.008x
        "1000 groups: whole-process CPU per beat <= 2x the floor (same run)": "PASS",
        "3000 groups: whole-process CPU per beat <= 2x the floor (same run)": "PASS",
        "1000 groups @ 5 s: CPU < 5% of one core": "PASS",
        "3000 groups @ 5 s: p99 lateness <= 5 ms": "PASS",  # the limit itself passes ("<=")
        "RSS at 100 groups no worse than before (+1 MB)": "n/a",  # no such size in the baseline
        "RSS at 1000 groups no worse than before (+1 MB)": "PASS",  # +1.0 MB: within the tolerance
        "RSS at 3000 groups no worse than before (+1 MB)": "n/a",
    }
    # The floor of part 1 wins over the short one; without either the ratio is n/a, never a guess.
    per_beat = {"clients": [{"provider": "sls", "kind": "floor", "cpu_us": 100.0}]}
    with_part1 = {t.name: t for t in targets.issue10({**now, "per_beat": per_beat}, before)}
    assert with_part1["100 groups: whole-process CPU per beat <= 2x the floor (same run)"].passed is False
    assert with_part1[
        "3000 groups: whole-process CPU per beat <= 2x the floor (same run)"
    ].measured.startswith("2.30x")
    no_floor = {t.name: t for t in targets.issue10({**now, "floor": None}, None)}
    assert no_floor["1000 groups: whole-process CPU per beat <= 2x the floor (same run)"].passed is None
    assert no_floor["RSS at 1000 groups no worse than before (+1 MB)"].measured == "n/a: no baseline"
    worse = _results([_scale_row(1000, 4.0, 200.0, 37.3, 1.0)], floor=floor)
    assert [t.passed for t in targets.issue10(worse, before) if t.name.startswith("RSS")] == [False]
    assert baseline.pair(13.5, 4.99) == "13.5 → 5.0" and baseline.pair(baseline.MISSING, 4.99) == "5.0"


def test_the_report_shows_each_figure_beside_the_baselines() -> None:
    report = bench("report")
    before = _results([_scale_row(1000, 13.5, 675.0, 36.2, 1.0)], startup=None)
    before["per_beat"] = {"clients": [{"provider": "sls", "kind": "floor", "cpu_us": 114.0}]}
    before["_path"] = "/x/baseline-before-issue10.json"
    now = _results([_scale_row(1000, 4.5, 230.0, 35.0, 2.0), _scale_row(3000, 14.0, 220.0, 40.0, 5.0)])
    now["floor"] = {"cpu_us": 115.0, "beats": 1000}
    text = report.markdown(now, before)
    assert "before is `baseline-before-issue10.json` (run today, commit abc1234)" in text
    row = next(line for line in text.splitlines() if line.startswith("| 1000 | 60 s |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2:5] == ["13.5 → 4.5", "675 → 230", "5.92 → 2.00"]  # CPU %, us/beat, x floor
    assert cells[8] == "0.0 / 1.0 / 9.0 → 0.0 / 2.0 / 9.0"
    row = next(line for line in text.splitlines() if line.startswith("| 3000 | 60 s |"))
    assert "| 14.0 | 220 | 1.91 |" in row  # no counterpart: shown alone
    target = next(line for line in text.splitlines() if line.startswith("| 1000 groups @ 5 s: CPU < 5%"))
    assert target == "| 1000 groups @ 5 s: CPU < 5% of one core | 13.5% (MISS) | 4.5% | PASS |"
    assert "→" not in report.markdown(now, None)


def test_flags_refuse_what_would_measure_nonsense(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cli = bench("__main__")
    for bad in (["--window", "7"], ["--window", "nan"], ["--groups", "0"], ["--beats", "3"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(bad)
        assert exit_.value.code == 2, bad
    assert cli.main(["--only", "startup", "--groups", "100"]) == 2  # sizes for a part not run
    broken = tmp_path / "broken.json"
    broken.write_text('{"machine": {}}')
    assert cli.main(["--baseline", str(broken), "--only", "startup"]) == 2  # refused before measuring
    assert "cannot read the baseline" in capsys.readouterr().err
    # --compare re-renders a run without measuring: the committed baseline against itself.
    assert cli.main(["--compare", str(REPO / "bench/results/baseline-before-issue10.json")]) == 0
    out = capsys.readouterr().out
    assert "| 1000 | 60 s | 13.5 → 13.5 | 675 → 675 | 5.90 → 5.90 |" in out
