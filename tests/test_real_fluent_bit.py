"""Every Fluent Bit example under the real Fluent Bit (`fluent-bit` on PATH; `.ci/run` puts the
project's ../shared/tools/fluent-bit there). Without it these skip, saying so.

What is checked, against an in-process emulator whose heartbeat log shows what the server saw:
- each example (classic, YAML, routing) delivers the first assignment to Fluent Bit's output, and
  a SIGTERM to Fluent Bit stops both it and shardbeat (no orphan keeps heartbeating);
- a 1000-shard assignment (8 KiB, twice fgets' default 4096) arrives whole: Buf_Size works;
- a SIGTERM to the whole unit (Fluent Bit and shardbeat at once, as systemd's default
  KillMode=control-group does) puts `lost` and `stopped` into Fluent Bit's output before it exits.
  (A SIGTERM to Fluent Bit alone cannot: Fluent Bit signals its exec child only after its outputs
  have stopped; hence the unit's KillMode and the DaemonSet's preStop `shardbeat stop`.)
- the control socket answers under Fluent Bit (`shardbeat status`, `shardbeat stop`);
- a Fluent Bit killed with SIGKILL: shardbeat stops claiming within one heartbeat interval.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest

from conftest import StartEmulator
from harness import wait_for
from shardbeat.emulator.server import EmulatorServer
from test_hosts import RECORD, admin, config, fixtures_doc, group, receipts

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "fluent-bit"
GRACE = 5  # the examples' service grace: Fluent Bit exits at most this long after a SIGTERM
Record = dict[str, Any]


@pytest.fixture
def fluent_bit() -> str:
    binary = shutil.which("fluent-bit")
    if binary is None:
        pytest.skip(
            "fluent-bit is not on PATH: the Fluent Bit examples were not run under Fluent Bit "
            "(CI puts ../shared/tools/fluent-bit on PATH)"
        )
    return binary


def fixtures_with(shards: int) -> dict[str, Any]:
    doc = copy.deepcopy(fixtures_doc())
    doc["sls"]["projects"]["demo-project"]["logstores"]["demo-logstore"]["shards"] = shards
    return doc


pytestmark = [pytest.mark.slow, pytest.mark.emulator_fixtures(fixtures_with(6))]


class Receiver(http.server.ThreadingHTTPServer):
    """The routing example's HTTP output lands here (loopback): JSON lines per POST."""

    daemon_threads = True

    def __init__(self) -> None:
        self.records: list[Record] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.records.extend(json.loads(x) for x in body.splitlines() if x.strip())
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class FluentBit:
    """A real Fluent Bit running one of the examples, its `shardbeat` a shim that runs this
    checkout with the test's config (whatever the example's command line says)."""

    def __init__(self, binary: str, tmp_path: Path, example: str, cfg: Path, http_port: int = 0) -> None:
        self.dir = tmp_path
        for name in ("fluent-bit.conf", "parsers.conf", "fluent-bit.yaml", "fluent-bit-routing.yaml"):
            text = (EXAMPLES / name).read_text()
            if http_port:
                text = text.replace("port: 8080", f"port: {http_port}")
            (tmp_path / name).write_text(text)
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        self.pid_file = tmp_path / "shardbeat.pid"
        shim = bindir / "shardbeat"
        shim.write_text(
            "#!/bin/sh\n"
            f"echo $$ > {shlex.quote(str(self.pid_file))}\n"
            f"exec {shlex.quote(sys.executable)} -m shardbeat run --config {shlex.quote(str(cfg))}\n"
        )
        shim.chmod(0o755)
        env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
        self.proc = subprocess.Popen(
            [binary, "-c", str(tmp_path / example)],
            stdout=subprocess.PIPE,
            # Apart from stdout: shardbeat's log lines (its stderr is Fluent Bit's) written into the
            # same pipe could land inside a record line Fluent Bit writes in more than one piece.
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp_path,
        )
        self.lines: list[str] = []  # Fluent Bit's stdout: the records its stdout output prints
        self.both: list[str] = []  # stdout and stderr, as they came: for failure messages
        self._cond = threading.Condition()
        for stream, lines in ((self.proc.stdout, self.lines), (self.proc.stderr, None)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()

    def _read(self, stream: IO[bytes] | None, lines: list[str] | None) -> None:
        assert stream is not None
        for raw in stream:
            line = raw.decode(errors="replace")
            with self._cond:
                if lines is not None:
                    lines.append(line)
                self.both.append(line)
                self._cond.notify_all()

    def records(self) -> list[Record]:
        """The records Fluent Bit's stdout output printed (its own log lines are not JSON)."""
        with self._cond:
            found = []
            for line in self.lines:
                if line.startswith("{"):
                    doc = json.loads(line)
                    if "event" in doc:
                        found.append(doc)
            return found

    def wait_record(self, event: str, timeout: float = 20, **match: Any) -> Record:
        def hit() -> Record | None:
            return next(
                (
                    r
                    for r in self.records()
                    if r["event"] == event and all(r.get(k) == v for k, v in match.items())
                ),
                None,
            )

        found = wait_for(hit, timeout)
        assert found, f"no {event} {match} in Fluent Bit's output:\n{self.output()[-4000:]}"
        return found  # type: ignore[no-any-return]

    def output(self) -> str:
        with self._cond:
            return "".join(self.both)

    def shardbeat_pid(self) -> int:
        assert wait_for(self.pid_file.exists, 10), self.output()[-3000:]
        return int(self.pid_file.read_text())

    def stop(self, timeout: float = GRACE + 5) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.pid_file.exists():  # the shim's pid is shardbeat's (exec), if it outlived the test
            pid = int(self.pid_file.read_text())
            with contextlib.suppress(OSError):
                if alive(pid) and b"shardbeat" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its new parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def check(records: list[Record]) -> None:
    for rec in records:
        rec = {k: v for k, v in rec.items() if k != "date"}  # Fluent Bit's json_lines adds `date`
        RECORD.validate(rec)


@pytest.mark.parametrize("example", ["fluent-bit.conf", "fluent-bit.yaml", "fluent-bit-routing.yaml"])
def test_every_example_delivers_the_first_assignment_and_stops_on_sigterm(
    fluent_bit: str, emulator: EmulatorServer, tmp_path: Path, example: str
) -> None:
    consumer = "fb-" + example.split(".")[0].split("-")[-1]
    cfg = config(tmp_path, "c", [group(emulator, "sls", consumer)])
    receiver = Receiver() if "routing" in example else None
    port = receiver.server_address[1] if receiver is not None else 0
    host = FluentBit(fluent_bit, tmp_path, example, cfg, http_port=port)  # type: ignore[arg-type]
    try:
        if receiver is not None:
            # membership records take the HTTP route; the rest stay on stdout
            assert wait_for(lambda: any(r["event"] == "assignment" for r in receiver.records), 20), (
                host.output()
            )
            first = next(r for r in receiver.records if r["event"] == "assignment")
            host.wait_record("lease")
            assert not [r for r in host.records() if r["event"] in ("assignment", "lost", "stopped")]
            check(receiver.records)
        else:
            first = host.wait_record("assignment")
        assert first["assigned"] == {"demo-logstore": [0, 1, 2, 3, 4, 5]}
        assert first["time"].endswith("Z")  # kept by the parser (Time_Keep) as the record's own time
        pid = host.shardbeat_pid()
        t0 = time.monotonic()
        assert host.stop() == 0, host.output()[-3000:]
        assert time.monotonic() - t0 < GRACE + 3
        assert wait_for(lambda: not alive(pid), 5), "shardbeat outlived Fluent Bit"
        n = len(receipts(emulator, consumer))
        time.sleep(0.7)
        assert len(receipts(emulator, consumer)) == n  # nobody heartbeats for this consumer now
        check(host.records())
        assert "parser returned an error" not in host.output()
    finally:
        host.kill()
        if receiver is not None:
            receiver.shutdown()


def test_a_1000_shard_assignment_survives_buf_size(
    fluent_bit: str, start_emulator: StartEmulator, tmp_path: Path
) -> None:
    big = start_emulator(fixtures_with(1000))
    host: FluentBit | None = None
    try:
        cfg = config(tmp_path, "c", [group(big, "sls", "fb-big")])
        host = FluentBit(fluent_bit, tmp_path, "fluent-bit.conf", cfg)
        first = host.wait_record("assignment")
        assert first["assigned"] == {"demo-logstore": list(range(1000))}
        assert len(json.dumps(first)) > 2 * 4096  # longer than fgets' default buffer, twice over
        assert "parser returned an error" not in host.output()
    finally:
        if host is not None:
            host.kill()


def test_sigterm_to_the_unit_puts_lost_and_stopped_into_the_output_before_fluent_bit_exits(
    fluent_bit: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    cfg = config(tmp_path, "c", [group(emulator, "sls", "fb-unit")])
    host = FluentBit(fluent_bit, tmp_path, "fluent-bit.yaml", cfg)
    try:
        host.wait_record("assignment")
        pid = host.shardbeat_pid()
        # What systemd's KillMode=control-group does: SIGTERM to every process of the unit at once.
        host.proc.send_signal(signal.SIGTERM)
        os.kill(pid, signal.SIGTERM)
        assert host.proc.wait(GRACE + 5) == 0
        events = [r["event"] for r in host.records()]
        assert events[-2:] == ["lost", "stopped"], events[-5:]
        lost = host.records()[-2]
        assert lost["reason"] == "stopped" and lost["lost"] == {"demo-logstore": [0, 1, 2, 3, 4, 5]}
        check(host.records())
    finally:
        host.kill()


def test_the_control_socket_works_under_fluent_bit(
    fluent_bit: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    sock = tmp_path / "ctl.sock"
    cfg = config(tmp_path, "c", [group(emulator, "sls", "fb-ctl")], control={"socket": str(sock)})
    host = FluentBit(fluent_bit, tmp_path, "fluent-bit.conf", cfg)
    try:
        host.wait_record("assignment")
        cli = [sys.executable, "-m", "shardbeat"]
        status = subprocess.run(
            [*cli, "status", "--socket", str(sock)], capture_output=True, text=True, timeout=20
        )
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines()[1].split()[:5] == ["sls", "demo-group", "fb-ctl", "6", "[0-5]"]
        stop = subprocess.run(
            [*cli, "stop", "--socket", str(sock)], capture_output=True, text=True, timeout=20
        )
        assert stop.returncode == 0, stop.stderr
        host.wait_record("lost", reason="stopped")
        host.wait_record("stopped")
        assert host.proc.poll() is None  # Fluent Bit runs on; only its exec child ended
        check(host.records())
    finally:
        host.kill()


def test_a_fluent_bit_sigkill_stops_the_claims_within_one_interval(
    fluent_bit: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    interval = 1.0
    consumer = "fb-killed"
    cfg = config(tmp_path, "c", [group(emulator, "sls", consumer, heartbeat_interval=interval)])
    host = FluentBit(fluent_bit, tmp_path, "fluent-bit.conf", cfg)
    try:
        host.wait_record("lease")
        pid = host.shardbeat_pid()
        host.proc.send_signal(signal.SIGKILL)
        host.proc.wait(5)
        t_kill = time.monotonic()
        assert wait_for(lambda: not alive(pid), 3), "shardbeat outlived a SIGKILLed Fluent Bit"
        time.sleep(interval)
        late = [r for r in receipts(emulator, consumer) if r["mono"] > t_kill + interval]
        assert not late, f"heartbeats after the host died: {late}"
        assert admin(emulator, "GET", "log?since=0")  # the emulator's admin log is what was read
    finally:
        host.kill()


MANY = 600  # groups: their stop writes 1200 records, past a threaded input's default ring buffer (1024)


def many_groups_doc() -> dict[str, Any]:
    doc = copy.deepcopy(fixtures_doc())
    logstores = doc["sls"]["projects"]["demo-project"]["logstores"]
    for i in range(MANY):
        store = logstores.setdefault(f"many-{i // 30}", {"shards": 1, "consumer_groups": {}})
        store["consumer_groups"][f"g-{i}"] = {"timeout": 20, "order": False}
    return doc


@pytest.mark.parametrize("example", ["fluent-bit.conf", "fluent-bit.yaml"])
def test_a_stop_of_hundreds_of_groups_does_not_hang_fluent_bit(
    fluent_bit: str, start_emulator: StartEmulator, tmp_path: Path, example: str
) -> None:
    """Before: the stop's `lost`+`stopped` per group overflowed the exec input's ring buffer after
    Fluent Bit's engine had stopped; the input retried forever ("could not enqueue records into the
    ring buffer") and Fluent Bit never exited. The examples set thread.ring_buffer.capacity."""
    many = start_emulator(many_groups_doc())
    host: FluentBit | None = None
    try:
        groups = [
            group(many, "sls", "fb-many", logstore=f"many-{i // 30}", consumer_group=f"g-{i}")
            | {"heartbeat_interval": 5, "timeout": 20}
            for i in range(MANY)
        ]
        host = FluentBit(fluent_bit, tmp_path, example, config(tmp_path, "c", groups))
        assert wait_for(lambda: sum(r["event"] == "assignment" for r in host.records()) >= MANY, 60), (
            host.output()[-3000:]
        )
        pid = host.shardbeat_pid()
        try:
            code = host.stop(timeout=GRACE + 20)
        except subprocess.TimeoutExpired:
            pytest.fail("Fluent Bit did not exit after SIGTERM:\n" + host.output()[-1500:])
        assert code == 0, host.output()[-3000:]
        assert wait_for(lambda: not alive(pid), 5), "shardbeat outlived Fluent Bit"
        assert "could not enqueue records into the ring buffer" not in host.output()
    finally:
        if host is not None:
            host.kill()
