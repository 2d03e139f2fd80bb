"""The emulator in a process of its own (so its CPU is never counted as the client's), and the fixtures
the benchmark gives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

SLS_KEY = ("emulator-akid", "emulator-secret")
CLS_KEY = ("emulator-secret-id", "emulator-secret-key")
PROJECT = "bench"
LOGSET = "bench-logset"
TOPICS = ("bench-topic-a", "bench-topic-b")
SLS_SHARDS = 4
CLS_PARTITIONS = 2
GROUPS_PER_LOGSTORE = 30  # the SLS quota the emulator enforces
REGION = "ap-guangzhou"


def per_beat_fixtures(names: list[str], timeout: int = 120) -> dict[str, Any]:
    """One SLS group and one CLS group per client name, so clients never rebalance each other."""
    return {
        "sls": {
            "credentials": [{"access_key_id": SLS_KEY[0], "access_key_secret": SLS_KEY[1]}],
            "projects": {
                PROJECT: {
                    "logstores": {
                        "per-beat": {
                            "shards": SLS_SHARDS,
                            "consumer_groups": {n: {"timeout": timeout, "order": False} for n in names},
                        }
                    }
                }
            },
        },
        "cls": {
            "credentials": [{"secret_id": CLS_KEY[0], "secret_key": CLS_KEY[1]}],
            "rate_limit": 1_000_000,  # the account quota (20/s) would otherwise be what we measure
            "logsets": {
                LOGSET: {
                    "topics": {t: {"partitions": CLS_PARTITIONS} for t in TOPICS},
                    "consumer_groups": {n: {"timeout": timeout, "topics": list(TOPICS)} for n in names},
                }
            },
        },
    }


def scale_logstore(index: int) -> str:
    return f"ls-{index // GROUPS_PER_LOGSTORE:04d}"


def scale_group(index: int) -> str:
    return f"g-{index:05d}"  # unique across logstores, so /metrics series never clash


def scale_fixtures(groups: int, timeout: int, shards: int = 2) -> dict[str, Any]:
    """`groups` SLS consumer groups, 30 to a logstore, in one project."""
    logstores: dict[str, Any] = {}
    for i in range(groups):
        store = logstores.setdefault(scale_logstore(i), {"shards": shards, "consumer_groups": {}})
        store["consumer_groups"][scale_group(i)] = {"timeout": timeout, "order": False}
    return {
        "sls": {
            "credentials": [{"access_key_id": SLS_KEY[0], "access_key_secret": SLS_KEY[1]}],
            "projects": {PROJECT: {"logstores": logstores}},
        }
    }


class EmulatorProcess:
    """`python -m shardbeat.emulator.server --port 0 --fixtures F` as a child process."""

    def __init__(self, fixtures: dict[str, Any], workdir: Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="shardbeat-bench-emu-", dir=workdir)
        path = Path(self._dir.name) / "fixtures.json"
        path.write_text(json.dumps(fixtures))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shardbeat.emulator.server", "--port", "0", "--fixtures", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.url = self._wait_for_url(30.0)
        self.port = int(self.url.rsplit(":", 1)[1])
        self.errors: list[str] = []
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _wait_for_url(self, timeout: float) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line:
                break
            seen.append(line)
            if "listening on " in line:
                return line.rsplit("listening on ", 1)[1].strip()
        self.stop()
        raise RuntimeError("the emulator did not start:\n" + "".join(seen))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            if len(self.errors) < 50:
                self.errors.append(raw.decode(errors="replace").rstrip())

    def admin(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}/_admin/{path}", timeout=60) as answer:
            return json.loads(answer.read())

    def receipts(self) -> list[dict[str, Any]]:
        doc = self.admin("log?since=0")
        receipts: list[dict[str, Any]] = doc["receipts"]
        return receipts

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._dir.cleanup()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
