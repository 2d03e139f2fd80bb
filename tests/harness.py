"""Test harness: real `shardbeat` processes against an in-process emulator, records collected live."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

Record = dict[str, Any]
T = TypeVar("T")

# Poll steps of wait_for without a condition: fast at first (most waits end within milliseconds),
# then coarser so a long wait does not spin.
_FIRST_STEP, _MAX_STEP = 0.001, 0.02


def wait_for(
    pred: Callable[[], T], timeout: float, *, cond: threading.Condition | None = None, step: float = _MAX_STEP
) -> T:
    """Until `pred()` is truthy or `timeout` seconds pass; returns its last value (truthy on success).

    With `cond` (held while `pred` runs), wakes on its notifications instead of polling; without one,
    polls with a step growing from 1 ms to `step` (20 ms; more when `pred` is costly, e.g. starts a
    process). The one waiting helper of the suite: a deadline, never a fixed sleep.
    """
    deadline = time.monotonic() + timeout
    if cond is not None:
        with cond:
            while True:
                value = pred()
                left = deadline - time.monotonic()
                if value or left <= 0:
                    return value
                cond.wait(left)
    wait = min(_FIRST_STEP, step)
    while True:
        value = pred()
        left = deadline - time.monotonic()
        if value or left <= 0:
            return value
        time.sleep(min(wait, left))
        wait = min(wait * 2, step)


class Plugin:
    """One `shardbeat run` subprocess; stdout records and stderr lines are collected by threads."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shardbeat", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self.records: list[tuple[float, Record]] = []  # (monotonic receipt time, record)
        self.raw_stdout: list[bytes] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw_stdout.append(line)
            rec = json.loads(line)  # anything that is not one JSON object per line fails the test
            assert isinstance(rec, dict)
            with self._cond:
                self.records.append((time.monotonic(), rec))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace"))

    def wait_for(self, pred: Callable[[list[Record]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred([r for _, r in self.records]):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._threads[0].is_alive()):
                    return pred([r for _, r in self.records])
                self._cond.wait(min(left, 0.1))
        return True

    def all_records(self) -> list[Record]:
        """Every record so far, in stdout order (a snapshot: the reader thread keeps appending)."""
        with self._cond:
            return [r for _, r in self.records]

    def events(self, name: str) -> list[Record]:
        with self._cond:
            return [r for _, r in self.records if r["event"] == name]

    def current(self, topic: str) -> set[int]:
        """What this node may act on now, by the records' rules (latest snapshot, dropped on lost)."""
        owned: set[int] = set()
        with self._cond:
            for _, r in self.records:
                if r["event"] == "assignment":
                    owned = set(r["assigned"].get(topic, []))
                elif r["event"] in ("lost", "stopped"):
                    owned = set()
        return owned

    def terminate(self, timeout: float = 5.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)

    def finish(self, timeout: float = 5.0) -> None:
        for t in self._threads:
            t.join(timeout)

    def log(self) -> str:
        return "".join(self.stderr)


def bytecode_env() -> dict[str, str]:
    """For a child started with a clean environment: the suite's bytecode cache (tests/conftest.py),
    so it does not compile the package anew. Changes nothing the child's behaviour depends on."""
    return {k: v for k, v in os.environ.items() if k == "PYTHONPYCACHEPREFIX"}


def shardbeat_in_process(
    *args: str, env: Mapping[str, str] | None = None, clean_env: bool = False, cwd: Path | str | None = None
) -> subprocess.CompletedProcess[str]:
    """`shardbeat ARGS` run by `cli.main` in this process, reported as `subprocess.run(capture_output=True,
    text=True)` would: for one-shot commands (validate, doctor, status, schema) whose logic a test checks,
    where a child would only add an interpreter start-up (each promise keeps a test in a real process).

    `env` is added to this process's environment (or, with `clean_env`, is all of it) and `cwd` is the
    working directory, both only for the call (so not while threads of this process read them, e.g. an
    in-process Runner). An exception escaping `cli.main` fails the test (a child would have printed a
    traceback)."""
    from shardbeat import cli

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    try:
        if clean_env:
            os.environ.clear()
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))  # catches argparse's SystemExit itself
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["shardbeat", *args], code, out.getvalue(), err.getvalue())


def write_config(path: Path, groups: list[dict[str, Any]], **extra: Any) -> Path:
    path.write_text(json.dumps({"groups": groups, **extra}))
    return path


# Child scripts that hold `shardbeat` at a point of its start until the file named by $GATE exists
# (bounded: 20 s), saying AT-GATE on stderr when they get there.
WAIT_AT_GATE = """
    sys.stderr.write("AT-GATE\\n")
    sys.stderr.flush()
    for _ in range(1000):
        if os.path.exists(os.environ["GATE"]):
            break
        time.sleep(0.02)
"""


def gated_before_locks(entry: str) -> str:
    """`shardbeat run` held before its instance locks (after every import); `entry` (Python source)
    then runs it."""
    return (
        "import os, sys, time\n"
        "from shardbeat.runtime import instance_lock\n"
        "real = instance_lock.acquire_instance_locks\n"
        "def gated(*args, **kwargs):" + WAIT_AT_GATE + "    return real(*args, **kwargs)\n"
        "instance_lock.acquire_instance_locks = gated\n" + entry
    )
