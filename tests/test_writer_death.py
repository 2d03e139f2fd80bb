"""The principle, end to end: a node that cannot tell downstream must not hold shards.

Each way of breaking the record writer (an encoder that fails on everything, an exception in the
writer thread, the record descriptor closed under it, the reader gone) must make the real process
stop claiming at once and exit non-zero with a log line saying why. What the server received is read
from the emulator's admin log, so the test sees claims, not our own records.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fault_kit import INTERVAL, TIMEOUT, admin, fast_fixtures
from harness import write_config
from shardbeat.emulator.server import EmulatorServer

pytestmark = [pytest.mark.slow, pytest.mark.emulator_fixtures(fast_fixtures())]

LAUNCHER = Path(__file__).parent / "writer_fault_launcher.py"
SAY_WHY = "downstream can no longer be told anything"
EXIT_WITHIN = 5.0  # seconds after the fault; the stop itself takes well under one


def config(emulator: EmulatorServer, tmp_path: Path, provider: str, consumer: str) -> Path:
    group = {**emulator.demo_config(provider), "consumer": consumer}
    group.update(heartbeat_interval=INTERVAL, timeout=TIMEOUT)
    return write_config(tmp_path / f"{consumer}.json", [group])


def claims(emulator: EmulatorServer, consumer: str) -> list[dict[str, Any]]:
    """Every heartbeat the server received from `consumer` that claimed at least one shard."""
    receipts = admin(emulator, "GET", "/_admin/log")["receipts"]
    return [
        r
        for r in receipts
        if r["consumer"] == consumer and r["held"] and any(ids for ids in r["held"].values())
    ]


def exit_and_log(proc: subprocess.Popen[bytes], within: float) -> tuple[int, str]:
    try:
        code = proc.wait(within)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    assert proc.stderr is not None
    return code, proc.stderr.read().decode(errors="replace")


def check_let_go(emulator: EmulatorServer, consumer: str, fired: float, code: int, err: str) -> None:
    assert code == 1, err
    assert SAY_WHY in err
    assert "Traceback" not in err
    before = [c for c in claims(emulator, consumer) if c["wall"] <= fired]
    after = [c for c in claims(emulator, consumer) if c["wall"] > fired + INTERVAL]
    assert before, "the node never claimed anything: the test proves nothing"
    assert after == [], f"claims after the writer broke: {after}"


def first_record(proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert b'"event":"assignment"' in line
    return line


@pytest.mark.parametrize("provider", ["sls", "cls"])
@pytest.mark.parametrize("fault", ["encoder", "thread", "ebadf"])
def test_a_broken_writer_stops_claims_and_exits_non_zero(
    emulator: EmulatorServer, tmp_path: Path, provider: str, fault: str
) -> None:
    consumer = f"{fault}-{provider}"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(LAUNCHER),
            fault,
            "2",
            "run",
            "--config",
            str(config(emulator, tmp_path, provider, consumer)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first_record(proc)
    assert proc.stdout is not None
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep reading what comes
    code, err = exit_and_log(proc, EXIT_WITHIN + 3 * INTERVAL)
    match = re.search(r"FAULT-FIRED (\d+\.\d+)", err)
    assert match, err
    check_let_go(emulator, consumer, float(match.group(1)), code, err)
    assert {
        "encoder": "cannot be encoded",
        "thread": "injected writer-thread failure",
        "ebadf": "Bad file descriptor",
    }[fault] in err


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_the_reader_going_away_stops_claims_at_once(
    emulator: EmulatorServer, tmp_path: Path, provider: str
) -> None:
    consumer = f"gone-{provider}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shardbeat",
            "run",
            "--config",
            str(config(emulator, tmp_path, provider, consumer)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first_record(proc)
    time.sleep(2 * INTERVAL)  # hold the shards a little while, then go away without a word
    fired = time.time()
    assert proc.stdout is not None
    proc.stdout.close()
    code, err = exit_and_log(proc, EXIT_WITHIN)
    check_let_go(emulator, consumer, fired, code, err)
    assert "stdout was closed by the reader" in err


def test_stdout_closed_at_start_claims_nothing(emulator: EmulatorServer, tmp_path: Path) -> None:
    cfg = config(emulator, tmp_path, "sls", "closed-at-start")
    proc = subprocess.run(
        ["/bin/sh", "-c", f'exec "{sys.executable}" -m shardbeat run --config "{cfg}" >&-'],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert b"stdout is closed" in proc.stderr and b"Traceback" not in proc.stderr
    time.sleep(INTERVAL)
    receipts = admin(emulator, "GET", "/_admin/log")["receipts"]
    assert [r for r in receipts if r["consumer"] == "closed-at-start"] == []


@pytest.mark.parametrize(
    ("redirect", "said"),
    [(">&-", "stdout is closed"), ('1<"$CFG"', "stdout is open for reading only")],
)
def test_a_stdout_no_record_can_reach_claims_nothing(
    emulator: EmulatorServer, tmp_path: Path, redirect: str, said: str
) -> None:
    """Read-only (`1<file`) was found only at the first record: after the first heartbeat had
    joined the group and been given shards, which then stayed with a node nobody heard from."""
    cfg = config(emulator, tmp_path, "sls", "unwritable-at-start")
    proc = subprocess.run(
        ["/bin/sh", "-c", f'exec "{sys.executable}" -m shardbeat run --config "$CFG" {redirect}'],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=30,
        env={**os.environ, "CFG": str(cfg)},
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{said}: records could not be written".encode() in proc.stderr
    assert b"Traceback" not in proc.stderr
    time.sleep(INTERVAL)
    receipts = admin(emulator, "GET", "/_admin/log")["receipts"]
    assert [r for r in receipts if r["consumer"] == "unwritable-at-start"] == []
