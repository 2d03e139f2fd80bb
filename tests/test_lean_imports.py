"""`shardbeat run` with static keys never imports requests: bootstrap and heartbeats go over the lean
transport (runtime/transport.py), and requests is loaded only by a credential source or doctor.
Importing it cost ~6 MB of idle RSS and ~100 ms before the first record (bench/startup.py).

Nor does it import what only other paths need (NOT_ON_THE_RUN_PATH): the operator verbs, doctor, the
emulator, the metrics server, msgpack when the output is JSON, a Tencent CLI profile's INI parser, the
did-you-mean of an unknown key, jsonschema for a valid config, the credential sources' parsers for
static keys, http.client. Each was measured before the first record; a test below fails when
someone imports one of them eagerly again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import Plugin
from shardbeat.emulator.server import EmulatorServer

HEAVY = ("requests", "urllib3")
# Dotted names: a module is listed when it is one of these or inside one of these packages.
NOT_ON_THE_RUN_PATH = (
    "msgpack",  # output.format msgpack only
    "http.server",  # the metrics endpoint and the emulator
    "shardbeat.http_server",
    "shardbeat.runtime.metrics",
    "shardbeat.emulator",
    "shardbeat.runtime.credential_refresher",  # a credentials.source other than static only
    "shardbeat.runtime.cloud_credentials",
    "shardbeat.runtime.doctor",
    "shardbeat.runtime.status_client",  # status / stop
    "shardbeat.views.status_table",
    "configparser",  # credentials.source profile, Tencent's INI file
    "difflib",  # "did you mean" for an unknown config key
    "hypothesis",
    # A valid config passes config/schema_check.py: jsonschema (and what it imports) only judges an
    # invalid one (~50-80 ms and ~4 MB before the first record).
    "jsonschema",
    "jsonschema_specifications",
    "referencing",
    "attr",
    "attrs",
    "rpds",
    "shardbeat.config.credential_sources",  # a credentials.source, or no keys given at all
    "shardbeat.config.cli_profiles",
    "http.client",  # the blocking transport only (and the email parser it brings, ~5 ms)
    "email.parser",
    "tempfile",  # the embedded emulator only
    "importlib.resources",  # the schemas are plain files beside the package (or in the checkout)
)


def imported(importtime_lines: list[str], names: tuple[str, ...]) -> list[str]:
    """Modules named in `-X importtime` output ("import time: self | cumulative | name") that are one
    of `names` or inside one of those packages."""
    found = []
    for line in importtime_lines:
        if not line.startswith("import time:"):
            continue
        module = line.rsplit("|", 1)[-1].strip()
        if any(module == name or module.startswith(name + ".") for name in names):
            found.append(module)
    return found


def heavy_imports(importtime_lines: list[str]) -> list[str]:
    return imported(importtime_lines, HEAVY)


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
    assert imported(plugin.stderr, NOT_ON_THE_RUN_PATH) == []


def test_heavy_imports_reads_importtime_lines() -> None:
    lines = [
        "import time: self [us] | cumulative | imported package",
        "import time:       310 |        310 |     urllib3.util",
        "import time:      1200 |       9000 | requests",
        "import time:        40 |         40 |   requests_toolbelt_not",  # another package entirely
        "2026-11-30 INFO requests are fine in a log line",
    ]
    assert heavy_imports(lines) == ["urllib3.util", "requests"]
    more = ["import time:        40 |         40 |   http.server", "import time:   1 |   1 |   http.client"]
    assert imported(more, ("http.server", "shardbeat.emulator")) == ["http.server"]


def test_the_run_path_does_not_check_the_shipped_schemas_against_the_metaschema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """~25 ms of CPU before the first record; tests/test_config_schemas.py checks each schema once."""
    from jsonschema import Draft202012Validator

    from shardbeat.config import schema_errors

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("check_schema at run time")

    monkeypatch.setattr(Draft202012Validator, "check_schema", refuse)
    schema_errors.validator_for.cache_clear()
    try:
        found = schema_errors.schema_problems("config", {"groups": [], "bogus": 1})
    finally:
        schema_errors.validator_for.cache_clear()  # no validator built under the patch outlives the test
    assert [p.path for p in found] == ["bogus", "groups"]
