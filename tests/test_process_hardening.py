"""Process-level hardening: hostile server strings never silence the record stream, and closed
standard descriptors are handled (issue 9 items 2, 5, 6)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import msgpack
import pytest

from fault_kit import INTERVAL, TIMEOUT, admin, fast_fixtures
from harness import write_config
from shardbeat.emulator.server import EmulatorServer

pytestmark = [pytest.mark.slow, pytest.mark.emulator_fixtures(fast_fixtures())]

SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "record.schema.json").read_text())
RECORD = jsonschema.Draft202012Validator(SCHEMA)


class Stream:
    """Records from a process's stdout, JSON lines or msgpack, decoded on a thread."""

    def __init__(self, proc: subprocess.Popen[bytes], fmt: str) -> None:
        self.records: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._proc = proc
        self._fmt = fmt
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        unpacker = msgpack.Unpacker(raw=False)
        while chunk := self._proc.stdout.read1(65536):
            if self._fmt == "json":
                assert chunk.endswith(b"\n") or True
                decoded = [json.loads(line) for line in chunk.splitlines() if line]
            else:
                unpacker.feed(chunk)
                decoded = list(unpacker)
            with self._cond:
                self.records.extend(decoded)
                self._cond.notify_all()

    def wait_for(self, pred: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.records):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True


def start(emulator: EmulatorServer, tmp_path: Path, provider: str, fmt: str) -> subprocess.Popen[bytes]:
    group = {**emulator.demo_config(provider), "consumer": f"c-{fmt}"}
    group.update(heartbeat_interval=INTERVAL, timeout=TIMEOUT)
    cfg = write_config(tmp_path / f"{fmt}.json", [group], output={"format": fmt})
    return subprocess.Popen(
        [sys.executable, "-m", "shardbeat", "run", "--config", str(cfg)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_a_lone_surrogate_in_a_server_message_does_not_silence_the_stream(
    emulator: EmulatorServer, tmp_path: Path, fmt: str
) -> None:
    proc = start(emulator, tmp_path, "cls", fmt)
    stream = Stream(proc, fmt)
    try:
        assert stream.wait_for(lambda rs: any(r["event"] == "assignment" for r in rs), 15)
        admin(
            emulator,
            "POST",
            "/_admin/faults",
            {
                "effect": "status",
                "service": "cls",
                "action": "heartbeat",
                "error_code": "InternalError",
                "message": "oops \udc80",
                "count": 2,
            },
        )

        def error_then_renewal(rs: list[dict[str, Any]]) -> bool:
            errors = [i for i, r in enumerate(rs) if r["event"] == "error"]
            return bool(errors) and any(r["event"] in ("lease", "assignment") for r in rs[errors[-1] :])

        assert stream.wait_for(error_then_renewal, 15), stream.records
        error = next(r for r in stream.records if r["event"] == "error")
        # The provider makes server text printable (the surrogate goes); the writer never saw it.
        assert error["error"]["message"].startswith("oops") and "\udc80" not in error["error"]["message"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert stream.wait_for(lambda rs: rs[-1]["event"] == "stopped", 5)
        assert [r["event"] for r in stream.records[-2:]] == ["lost", "stopped"]
        for record in stream.records:
            RECORD.validate(record)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_closed_stdin_is_not_read_as_control_input(emulator: EmulatorServer, tmp_path: Path) -> None:
    """`<&-`: fd 0 gets /dev/null before the lock file could take it, so there is nothing to read:
    no bogus control errors, and exit_on_stdin_eof does not stop the process."""
    group = {**emulator.demo_config("sls"), "consumer": "stdin-closed"}
    group.update(heartbeat_interval=INTERVAL, timeout=TIMEOUT)
    cfg = write_config(tmp_path / "c.json", [group], control={"exit_on_stdin_eof": True})
    proc = subprocess.Popen(
        ["/bin/sh", "-c", f'exec "{sys.executable}" -m shardbeat run --config "{cfg}" <&-'],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stream = Stream(proc, "json")
    try:
        assert stream.wait_for(lambda rs: any(r["event"] == "assignment" for r in rs), 15)
        time.sleep(4 * INTERVAL)
        assert proc.poll() is None, "stopped as if stdin had ended"
        assert not [r for r in stream.records if r["event"] == "error"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        assert "not reading control messages from it" in err
        assert " WARNING " not in err and " ERROR " not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
