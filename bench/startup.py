"""Part 3: time from exec to the first record, what the imports cost, and RSS of an idle plugin.

The first record of a single-group plugin is its first `assignment`, written once the first heartbeat
is answered; so exec-to-first-record covers interpreter start, imports, config validation, the first
signed request and its answer.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.emulator import EmulatorProcess, scale_fixtures
from bench.plugin import PluginProcess, bytecode_note, child_env, command, scale_config


def _python_floor(runs: int) -> float:
    """Seconds for `python -c pass`: the part of any Python plugin's start-up no code can avoid."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=child_env())
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _import_times(config: Path) -> dict[str, Any]:
    """`python -X importtime -m shardbeat run` until its first record: total and the largest imports."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "shardbeat", "run", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    rows: list[tuple[str, int, int, int]] = []  # (name, self us, cumulative us, depth)
    for line in err.decode(errors="replace").splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:") :].split("|")
        try:
            own, cumulative = int(parts[0]), int(parts[1])
        except ValueError:
            continue  # the header line
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((name.strip(), own, cumulative, depth))
    total = sum(own for _, own, _, _ in rows)
    top = sorted((r for r in rows if r[3] <= 1), key=lambda r: -r[2])[:12]
    third_party: dict[str, int] = {}
    for name, _, cumulative, _ in rows:
        root = name.split(".")[0]
        if root in (
            "jsonschema",
            "msgpack",
            "requests",
            "urllib3",
            "tomllib",
            "referencing",
            "rpds",
            "attrs",
        ):
            third_party[root] = max(third_party.get(root, 0), cumulative)
    return {
        "total_ms": round(total / 1000, 1),
        "largest_ms": {name: round(cumulative / 1000, 1) for name, _, cumulative, _ in top},
        "third_party_ms": {k: round(v / 1000, 1) for k, v in sorted(third_party.items())},
    }


def run(runs: int, idle_seconds: float, workroot: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="startup-", dir=workroot))
    with EmulatorProcess(scale_fixtures(1, 15), workdir) as emulator:
        config = scale_config(emulator.url, 1, 5.0, 15, 1.5, workdir)
        firsts: list[float] = []
        warm = PluginProcess(config, workdir / "warm-up")  # untimed: fills the bytecode cache
        warm.wait_records(lambda records: bool(records), 20.0)
        warm.stop()
        for i in range(runs):
            plugin = PluginProcess(config, workdir / f"run-{i}")
            ok = plugin.wait_records(lambda records: bool(records), 10.0)
            plugin.stop()
            if ok and plugin.first_record_after is not None:
                firsts.append(plugin.first_record_after)
        idle = PluginProcess(config, workdir / "idle")
        try:
            idle.wait_records(lambda records: bool(records), 10.0)
            time.sleep(idle_seconds)
            sample = idle.sample()
        finally:
            idle.stop()
        imports = _import_times(workdir / "run-0" / "config.json")
    return {
        "command": " ".join(Path(c).name for c in command()) + " run --config FILE",
        "runs": len(firsts),
        "bytecode": bytecode_note(),
        "first_record_ms": {
            "median": round(statistics.median(firsts) * 1000, 1) if firsts else None,
            "min": round(min(firsts) * 1000, 1) if firsts else None,
            "max": round(max(firsts) * 1000, 1) if firsts else None,
        },
        "python_startup_ms": round(_python_floor(5) * 1000, 1),
        "idle_after_s": idle_seconds,
        "idle_rss_mb": round(sample.rss_mb, 1) if sample else None,
        "idle_threads": sample.threads if sample else None,
        "imports": imports,
    }
