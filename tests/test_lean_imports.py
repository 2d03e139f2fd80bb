"""`shardbeat run` with static keys never imports requests: bootstrap and heartbeats go over the lean
transport (runtime/transport.py), and requests is loaded only by a credential source or doctor.
Importing it cost ~6 MB of idle RSS and ~100 ms before the first record (bench/startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Plugin
from shardbeat.emulator.server import EmulatorServer

HEAVY = ("requests", "urllib3")


def heavy_imports(importtime_lines: list[str]) -> list[str]:
    """Modules of HEAVY named in `-X importtime` output ("import time: self | cumulative | name")."""
    found = []
    for line in importtime_lines:
        if not line.startswith("import time:"):
            continue
        name = line.rsplit("|", 1)[-1].strip()
        if name.split(".", 1)[0] in HEAVY:
            found.append(name)
    return found


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


def test_the_run_path_imports_without_requests() -> None:
    code = (
        "import sys\n"
        "import shardbeat.cli, shardbeat.runtime.process, shardbeat.runtime.runner\n"
        "import shardbeat.runtime.credential_refresher, shardbeat.runtime.cloud_credentials\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_static_keys_run_never_imports_requests(emulator: EmulatorServer, tmp_path: Path) -> None:
    groups = [
        {**emulator.demo_config(p), "consumer": f"lean-{p}", "heartbeat_interval": 0.3, "timeout": 6}
        for p in ("sls", "cls")
    ]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"groups": groups, "runtime_dir": str(tmp_path / "run")}))
    plugin = Plugin(["run", "--config", str(config)], env={"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        leases = lambda rs: sum(r["event"] == "lease" for r in rs) >= 2  # noqa: E731
        assert plugin.wait_for(leases, 20), plugin.log()
    finally:
        plugin.terminate()
        plugin.finish()
    assert any(line.startswith("import time:") for line in plugin.stderr), "no -X importtime output"
    assert heavy_imports(plugin.stderr) == []


def test_heavy_imports_reads_importtime_lines() -> None:
    lines = [
        "import time: self [us] | cumulative | imported package",
        "import time:       310 |        310 |     urllib3.util",
        "import time:      1200 |       9000 | requests",
        "import time:        40 |         40 |   requests_toolbelt_not",  # another package entirely
        "2026-11-30 INFO requests are fine in a log line",
    ]
    assert heavy_imports(lines) == ["urllib3.util", "requests"]
