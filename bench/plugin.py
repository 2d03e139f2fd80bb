"""A real `shardbeat run` child process: its records read live, its CPU and memory sampled from /proc."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import procstat
from bench.emulator import PROJECT, SLS_KEY, scale_group, scale_logstore

Record = dict[str, Any]


def command() -> list[str]:
    """The `shardbeat` console script next to this interpreter (what a host would exec), else -m."""
    script = Path(sys.executable).with_name("shardbeat")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "shardbeat"]


def _private_dir(path: str) -> bool:
    """`path` exists (made here if not) as a directory of ours that no one else can write: bytecode
    planted in a cache would run (the same rule as tests/conftest.py)."""
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


PYCACHE = os.path.join(tempfile.gettempdir(), f"shardbeat-bench-pyc-{os.getuid()}")


def child_env() -> dict[str, str]:
    """The environment of every plugin child: this one, with bytecode as an installed package has it.

    `pip install` of a wheel compiles the package's bytecode at install time, so an operator's start
    never compiles source. A checkout is an editable install, and where PYTHONDONTWRITEBYTECODE is set
    (this machine and CI) every child would compile the whole package (and every library it imports)
    again: ~60 ms and more of each start, and the compiler's peak in its RSS. So children write and
    read bytecode in a private cache instead (PYTHONPYCACHEPREFIX, validated by source mtime, so an
    edited module is recompiled); startup.py warms it with one untimed start first. Without a private
    directory the environment is left as it is (and the report says so)."""
    env = dict(os.environ)
    if _private_dir(PYCACHE):
        env["PYTHONPYCACHEPREFIX"] = PYCACHE
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def bytecode_note() -> str:
    if child_env().get("PYTHONPYCACHEPREFIX") == PYCACHE:
        return "bytecode from a private cache warmed by an untimed start (as a wheel install compiles it)"
    return "bytecode as the environment has it (no private cache: children may compile from source)"


def config_supports(key: str) -> bool:
    """Whether this checkout's config schema knows a top-level key (runtime_dir, metrics, ...)."""
    try:
        from shardbeat.schemas import schema_text

        return key in json.loads(schema_text("config")).get("properties", {})
    except Exception:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scale_config(
    url: str, groups: int, interval: float, timeout: float, margin: float, workdir: Path
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "groups": [
            {
                "provider": "sls",
                "endpoint": url,
                "project": PROJECT,
                "logstore": scale_logstore(i),
                "consumer_group": scale_group(i),
                "consumer": "bench-consumer",
                "credentials": {"access_key_id": SLS_KEY[0], "access_key_secret": SLS_KEY[1]},
                "heartbeat_interval": interval,
                "timeout": timeout,
                "lease_margin": margin,
            }
            for i in range(groups)
        ],
    }
    if config_supports("runtime_dir"):
        doc["runtime_dir"] = str(workdir / "run")
    return doc


def parse_time(text: str) -> float:
    """RFC 3339 UTC with a Z, as records carry it, to epoch seconds."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class PluginProcess:
    def __init__(self, config: dict[str, Any], workdir: Path, log_level: str = "warning") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "config.json"
        path.write_text(json.dumps(config))
        self.records: list[tuple[float, Record]] = []  # (wall time read, record)
        self.stderr: list[str] = []
        self._stderr_times: list[float] = []
        self.stopping_at = float("inf")  # wall time stop() began
        self._cond = threading.Condition()
        self.started_wall = time.time()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [*command(), "run", "--config", str(path), "--log-level", log_level],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=child_env(),
        )
        self.first_record_after: float | None = None  # seconds from Popen to the first stdout line
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.time()
            if self.first_record_after is None:
                self.first_record_after = time.perf_counter() - self.started
            try:
                record = json.loads(line)
            except ValueError:
                record = {"event": "<not json>", "line": line[:200].decode(errors="replace")}
            with self._cond:
                self.records.append((now, record))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if len(self.stderr) < 200:
                self._stderr_times.append(time.time())
                self.stderr.append(line.decode(errors="replace").rstrip())

    def stderr_before(self, wall: float) -> list[str]:
        return [line for t, line in zip(self._stderr_times, self.stderr, strict=False) if t < wall]

    def wait_records(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.records):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return bool(predicate(self.records))
                self._cond.wait(min(left, 0.2))
        return True

    def sample(self) -> procstat.ProcSample | None:
        try:
            return procstat.sample(self.proc.pid)
        except OSError:
            return None

    def stop(self, timeout: float = 10.0) -> tuple[int | None, float]:
        """SIGTERM, then wait: (exit code, seconds it took to exit)."""
        started = time.perf_counter()
        self.stopping_at = time.time()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        took = time.perf_counter() - started
        for t in self._threads:
            t.join(5)
        return self.proc.returncode, took

    def snapshot(self) -> list[tuple[float, Record]]:
        with self._cond:
            return list(self.records)


def clean(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
