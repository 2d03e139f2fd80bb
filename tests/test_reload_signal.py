"""SIGHUP's reload runs off the loop thread (process.Reloads): the signal only asks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fault_kit import fast_emulator
from harness import write_config
from shardbeat.runtime.process import Reloads


def test_a_reload_runs_on_its_own_thread_and_asks_during_one_share_the_next() -> None:
    started = threading.Event()
    release = threading.Event()
    ran: list[str] = []
    done = threading.Semaphore(0)

    def reload() -> None:
        ran.append(threading.current_thread().name)
        started.set()
        release.wait(5)
        done.release()

    reloads = Reloads(reload)
    reloads.ask()  # returns at once: the work is not done on the asking (signal) thread
    assert started.wait(5)
    assert ran == ["shardbeat-reload"]
    for _ in range(5):  # a burst of signals while one reload runs: one more reload, not five
        reloads.ask()
    release.set()
    assert done.acquire(timeout=5) and done.acquire(timeout=5)
    assert not done.acquire(timeout=0.3)
    assert ran == ["shardbeat-reload", "shardbeat-reload"]


def test_a_failing_reload_does_not_end_reloads() -> None:
    calls: list[int] = []
    second = threading.Event()

    def reload() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        second.set()

    reloads = Reloads(reload)
    reloads.ask()
    for _ in range(50):
        if calls:
            break
        threading.Event().wait(0.02)
    reloads.ask()
    assert second.wait(5)


@pytest.mark.slow
def test_a_flood_of_reload_ops_is_coalesced_like_sighup(tmp_path: Path) -> None:
    """`reload` ops (stdin, socket) go through the same Reloads thread as SIGHUP: before, each op
    re-read the config on the control reader itself, one after another (a second of CPU each for
    3000 groups), and every later op on that channel, `stop` included, waited behind them."""
    ops = 300
    with fast_emulator() as emulator:
        doc = emulator.demo_config("sls") | {"consumer": "reload-flood", "heartbeat_interval": 0.5}
        config = write_config(tmp_path / "c.json", [doc], runtime_dir=str(tmp_path / "run"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "shardbeat", "run", "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        lines: list[str] = []
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert json.loads(proc.stdout.readline())["event"] == "assignment"
            reader = threading.Thread(target=lambda: lines.extend(map(bytes.decode, proc.stderr or [])))
            reader.start()
            proc.stdin.write(b'{"op":"reload"}\n' * ops)
            proc.stdin.flush()
            for _ in range(500):  # bounded: 10 s for the first reload to be done
                if any("reload: credentials re-read" in line for line in lines):
                    break
                threading.Event().wait(0.02)
            proc.stdin.write(b'{"op":"stop"}\n')
            proc.stdin.flush()
            out = proc.stdout.read()
            proc.wait(30)
            reader.join(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    log = "".join(lines)
    assert proc.returncode == 0, log[-2000:]
    assert json.loads(out.splitlines()[-1])["event"] == "stopped"
    reloads = log.count("reload: credentials re-read")
    assert 1 <= reloads < ops // 10, f"{reloads} re-reads for {ops} reload ops"


@pytest.mark.slow
def test_a_burst_of_sighups_never_stops_the_loop(tmp_path: Path) -> None:
    """The SIGHUP handler took a lock (threading.Event.set); the next SIGHUP, arriving while it held
    it, ran the handler again inside it and deadlocked the loop thread within ~0.1 s of a burst:
    no more heartbeats, no `lost`, and SIGTERM no longer stopped the process."""
    with fast_emulator() as emulator:
        doc = emulator.demo_config("sls") | {"consumer": "sighup-burst", "heartbeat_interval": 0.3}
        config = write_config(tmp_path / "c.json", [doc], runtime_dir=str(tmp_path / "run"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "shardbeat", "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["event"] == "assignment"
            sent = 0
            stop_at = time.monotonic() + 1.5
            while time.monotonic() < stop_at and proc.poll() is None:
                os.kill(proc.pid, signal.SIGHUP)
                sent += 1
            assert proc.poll() is None, "a burst of SIGHUPs ended the process"
            calls_before = emulator.world.receipts()[1]
            threading.Event().wait(1.0)  # the loop still beats (every 0.3 s)...
            assert emulator.world.receipts()[1] > calls_before, f"no heartbeat after {sent} SIGHUPs"
            proc.terminate()  # ...and still stops
            out = proc.communicate(timeout=10)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert proc.returncode == 0
    assert json.loads(out.splitlines()[-1])["event"] == "stopped"


def test_close_ends_the_reload_thread() -> None:
    reloads = Reloads(lambda: None)
    assert reloads.thread.is_alive()
    reloads.close()
    reloads.thread.join(5)
    assert not reloads.thread.is_alive()
