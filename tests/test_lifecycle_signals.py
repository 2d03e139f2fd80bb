"""Signals while `shardbeat run` is still starting (config read, locks, groups built: seconds for a big
config), before the runner's own handlers exist. A real `shardbeat run` subprocess is held at a gate
just before it takes its instance locks, so the signal lands in that window every time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fault_kit import INTERVAL, TIMEOUT, fast_fixtures
from harness import gated_before_locks, write_config
from shardbeat.emulator.fixtures import parse_fixtures
from shardbeat.emulator.server import EmulatorServer

pytestmark = pytest.mark.slow

# `shardbeat run`, held before its instance locks until the gate file exists (bounded: 20 s).
GATED_RUN = gated_before_locks("from shardbeat.cli import main\nsys.exit(main(sys.argv[1:]))\n")


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(parse_fixtures(fast_fixtures())).start()
    yield server
    server.stop()


class Gated:
    def __init__(self, emulator: EmulatorServer, tmp_path: Path, consumer: str) -> None:
        doc = emulator.demo_config("sls")
        doc.update(consumer=consumer, heartbeat_interval=INTERVAL, timeout=TIMEOUT)
        config = write_config(tmp_path / "c.json", [doc], runtime_dir=str(tmp_path / "run"))
        self.gate = tmp_path / "gate"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", GATED_RUN, "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "GATE": str(self.gate)},
        )
        self.stderr: list[str] = []
        self.stdout: list[bytes] = []
        self._at_gate = threading.Event()
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            text = line.decode(errors="replace")
            self.stderr.append(text)
            if text.startswith("AT-GATE"):
                self._at_gate.set()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)

    def at_gate(self) -> bool:
        return self._at_gate.wait(20)

    def open_gate(self) -> None:
        self.gate.write_text("go")

    def wait_for_record(self, event: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(json.loads(line)["event"] == event for line in list(self.stdout)):
                return True
            time.sleep(0.02)
        return False

    def wait_for_log(self, text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log():
                return True
            time.sleep(0.02)
        return False

    def log(self) -> str:
        return "".join(self.stderr)

    def finish(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for reader in self._readers:
            reader.join(5)


def heartbeats_of(emulator: EmulatorServer, consumer: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(emulator.url + "/_admin/log", timeout=5) as answer:
        receipts: list[dict[str, Any]] = json.load(answer)["receipts"]
    return [r for r in receipts if r["consumer"] == consumer]


def test_sighup_while_starting_is_a_reload_not_a_death(emulator: EmulatorServer, tmp_path: Path) -> None:
    p = Gated(emulator, tmp_path, "hup-node")
    try:
        assert p.at_gate(), p.log()
        p.proc.send_signal(signal.SIGHUP)
        time.sleep(0.2)  # the signal is handled (or, before the fix, kills) while the start waits
        p.open_gate()
        assert p.wait_for_record("assignment", 10), (p.proc.poll(), p.log())
        assert p.wait_for_log("reload: credentials re-read", 10), p.log()
        assert "SIGHUP came while starting: reloading now" in p.log()
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(10) == 0
        p.finish()
        assert json.loads(p.stdout[-1])["event"] == "stopped"
    finally:
        p.finish()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_while_starting_exits_zero_saying_why_and_claims_nothing(
    emulator: EmulatorServer, tmp_path: Path, sig: signal.Signals
) -> None:
    p = Gated(emulator, tmp_path, "early-stop")
    try:
        assert p.at_gate(), p.log()
        t0 = time.monotonic()
        p.proc.send_signal(sig)
        assert p.proc.wait(10) == 0, p.log()
        assert time.monotonic() - t0 < 5  # promptly, not after the start it interrupted
        p.finish()
        assert f"stopped by {sig.name} while starting; nothing was claimed" in p.log()
        assert "Traceback" not in p.log()
        assert p.stdout == []
        assert heartbeats_of(emulator, "early-stop") == []
    finally:
        p.finish()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_signals_while_the_stopped_process_tears_down_do_not_change_its_exit(
    emulator: EmulatorServer, tmp_path: Path, sig: signal.Signals
) -> None:
    """A logrotate SIGHUP or a host's second SIGTERM in the last milliseconds: Python puts default
    actions back as it finalizes, so the clean stop exited 'killed by signal' instead of 0."""
    p = Gated(emulator, tmp_path, "late-signal")
    try:
        assert p.at_gate(), p.log()
        p.open_gate()
        assert p.wait_for_record("assignment", 10), (p.proc.poll(), p.log())
        p.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 20
        while p.proc.poll() is None and time.monotonic() < end:  # a storm until it has exited
            try:
                p.proc.send_signal(sig)
            except ProcessLookupError:
                break
            time.sleep(0.002)
        assert p.proc.wait(5) == 0, p.log()
        p.finish()
        assert json.loads(p.stdout[-1])["event"] == "stopped"
    finally:
        p.finish()


def test_leave_puts_back_what_install_replaced() -> None:
    """`run` that never ran (a config error; a test's stand-in runner) leaves the caller's handlers."""
    from shardbeat.runtime import lifecycle_signals

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    lifecycle_signals.install()
    try:
        assert signal.getsignal(signal.SIGHUP) != before[signal.SIGHUP]
    finally:
        lifecycle_signals.leave()
    assert {sig: signal.getsignal(sig) for sig in before} == before
