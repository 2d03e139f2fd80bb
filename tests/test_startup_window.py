"""The first moments of `shardbeat run`: signals that land while the program is still being imported,
and a host killed while it starts. Both used to find nothing in place: SIGHUP killed the plugin
silently (a Fluent Bit oneshot child is never restarted), SIGTERM killed it "by signal", and a parent
that died before the parent watch existed was never noticed, so the orphan went on claiming shards.

Each test holds a real process at a gate (a file the test creates), so the event lands in the window
every time: the import of shardbeat.cli (reached through the real entry, `python -m shardbeat`), or
the instance locks (after the imports, before any heartbeat)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fault_kit import INTERVAL, TIMEOUT, fast_fixtures
from harness import WAIT_AT_GATE, gated_before_locks, wait_for, write_config
from shardbeat.emulator.fixtures import parse_fixtures
from shardbeat.emulator.server import EmulatorServer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent

# The entry `python -m shardbeat run ...`, held as it imports shardbeat.cli (the bulk of the imports).
GATED_IMPORT = (
    "import os, runpy, sys, time\n"
    "class Gate:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    '        if name == "shardbeat.cli":'
    + WAIT_AT_GATE.replace("\n    ", "\n            ")
    + "        return None\n"
    "sys.meta_path.insert(0, Gate())\n"
    'sys.argv = ["shardbeat", *sys.argv[1:]]\n'
    'runpy.run_module("shardbeat", run_name="__main__", alter_sys=True)\n'
)

# `shardbeat run` held before its instance locks (after every import), under a parent the test kills.
GATED_LOCKS = gated_before_locks(
    'from shardbeat.launch import main\nsys.argv = ["shardbeat", *sys.argv[1:]]\nsys.exit(main())\n'
)

# The host: starts the plugin with its stdout and stderr in files (so that the host's death does not
# also close the plugin's stdout, which the record writer would notice on its own), then waits.
HOST = """
import subprocess, sys, time
out, err = open(sys.argv[1], "wb"), open(sys.argv[2], "wb")
subprocess.Popen([sys.executable, "-c", sys.argv[3], *sys.argv[4:]], stdout=out, stderr=err)
time.sleep(60)
"""


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(parse_fixtures(fast_fixtures())).start()
    yield server
    server.stop()


def heartbeats_of(emulator: EmulatorServer, consumer: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(emulator.url + "/_admin/log", timeout=5) as answer:
        receipts: list[dict[str, Any]] = json.load(answer)["receipts"]
    return [r for r in receipts if r["consumer"] == consumer]


def config_for(emulator: EmulatorServer, tmp_path: Path, consumer: str) -> Path:
    doc = emulator.demo_config("sls")
    doc.update(consumer=consumer, heartbeat_interval=INTERVAL, timeout=TIMEOUT)
    return write_config(tmp_path / "c.json", [doc], runtime_dir=str(tmp_path / "run"))


def start_gated_import(config: Path, gate: Path, err: Path, *flags: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", GATED_IMPORT, "run", "--config", str(config), *flags],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err.open("wb"),
        env={**os.environ, "GATE": str(gate)},
    )


def test_the_console_script_and_python_m_enter_through_the_same_early_start() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["shardbeat"] == "shardbeat.launch:main"
    main_module = (ROOT / "plugin" / "shardbeat" / "__main__.py").read_text()
    assert "from shardbeat.launch import main" in main_module


def test_sighup_during_the_imports_is_a_reload_not_a_death(emulator: EmulatorServer, tmp_path: Path) -> None:
    gate, err = tmp_path / "gate", tmp_path / "err"
    proc = start_gated_import(config_for(emulator, tmp_path, "hup-import"), gate, err)
    try:
        assert wait_for(lambda: "AT-GATE" in err.read_text(), 20), err.read_text()
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.2)  # handled (or, before the fix, fatal) while the import waits
        assert proc.poll() is None, (proc.returncode, err.read_text())
        gate.write_text("go")
        assert wait_for(lambda: "reload: credentials re-read" in err.read_text(), 15), err.read_text()
        assert "SIGHUP came while starting: reloading now" in err.read_text()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, err.read_text()
        assert json.loads(out.splitlines()[-1])["event"] == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)


@pytest.mark.parametrize(("sig", "log_format"), [(signal.SIGTERM, "text"), (signal.SIGINT, "json")])
def test_stop_signal_during_the_imports_exits_zero_saying_why(
    emulator: EmulatorServer, tmp_path: Path, sig: signal.Signals, log_format: str
) -> None:
    gate, err = tmp_path / "gate", tmp_path / "err"
    config = config_for(emulator, tmp_path, "term-import")
    proc = start_gated_import(config, gate, err, "--log-format", log_format)
    try:
        assert wait_for(lambda: "AT-GATE" in err.read_text(), 20), err.read_text()
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10)
        log = err.read_text()
        assert proc.returncode == 0, log
        assert f"stopped by {sig.name} while starting; nothing was claimed" in log
        if log_format == "json":  # every line one JSON object, as a Vector host decodes stderr
            assert all(json.loads(line)["message"] for line in log.splitlines() if line != "AT-GATE")
        assert "Traceback" not in log and "KeyboardInterrupt" not in log
        assert out == b""
        assert heartbeats_of(emulator, "term-import") == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)


def test_a_host_killed_while_the_plugin_starts_is_noticed_before_any_claim(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    gate, out, err = tmp_path / "gate", tmp_path / "out", tmp_path / "err"
    config = config_for(emulator, tmp_path, "orphan")
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(out), str(err), GATED_LOCKS, "run", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        env={**os.environ, "GATE": str(gate)},
    )
    try:
        assert wait_for(lambda: err.exists() and "AT-GATE" in err.read_text(), 20)
        os.kill(host.pid, signal.SIGKILL)  # the host dies while the plugin is still starting
        host.wait(5)
        gate.write_text("go")
        assert wait_for(lambda: "INFO shardbeat.runner: stopped" in err.read_text(), 15), err.read_text()
        assert f"the host process (pid {host.pid}) is gone" in err.read_text()
        events = [json.loads(line)["event"] for line in out.read_bytes().splitlines()]
        assert events == ["stopped"]  # nothing was ever claimed, so nothing was lost
        time.sleep(INTERVAL * 2)  # before the fix the orphan beats on, every interval
        assert heartbeats_of(emulator, "orphan") == []
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(5)


# The plugin exec'ed with SIGTERM, SIGINT and SIGHUP blocked, as a host forking from a thread that
# blocks them would leave it (a signal mask survives exec).
MASKED = """
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
os.execv(sys.executable, [sys.executable, "-m", "shardbeat", *sys.argv[1:]])
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signals_blocked_by_the_host_still_stop_the_plugin(
    emulator: EmulatorServer, tmp_path: Path, sig: signal.Signals
) -> None:
    err = tmp_path / "err"
    proc = subprocess.Popen(
        [sys.executable, "-c", MASKED, "run", "--config", str(config_for(emulator, tmp_path, "masked"))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err.open("wb"),
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["event"] == "assignment"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10)  # before the fix: never delivered, a hang
        assert proc.returncode == 0, err.read_text()
        assert json.loads(out.splitlines()[-1])["event"] == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)


def test_run_ends_without_the_interpreters_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under CI load, a clean stop ended in SIGSEGV during the teardown, with the plugin's daemon
    # threads still there; `run` now leaves by os._exit once its records and logs are out.
    import shardbeat.cli
    from shardbeat import launch

    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(launch.os, "_exit", fake_exit)
    monkeypatch.setattr(launch.lifecycle_signals, "install", lambda: None)
    monkeypatch.setattr(launch, "remember_parent", lambda: None)
    monkeypatch.setattr(launch.faulthandler, "enable", lambda: None)
    monkeypatch.setattr(shardbeat.cli, "main", lambda: 3)
    monkeypatch.setattr(sys, "argv", ["shardbeat", "run", "--config", "x.json"])
    with pytest.raises(SystemExit):
        launch.main()
    assert exits == [3]
    monkeypatch.setattr(sys, "argv", ["shardbeat", "validate", "--config", "x.json"])
    assert launch.main() == 3 and exits == [3]  # the one-shot verbs return as before
