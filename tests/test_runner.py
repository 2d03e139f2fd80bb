"""The Runner (the shell) in-process against the emulator: a handful of end-to-end proofs that it wires
the driver to the wire and to stdout: bootstrap, assignment and release (on ack, and once the revoke is
written), status, credential rotation, and a broken or stuck writer. The rules themselves are step
tests of the GroupDriver (tests/test_driver_*.py)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from harness import wait_for
from shardbeat.config import config_from_dict
from shardbeat.emulator.fixtures import parse_fixtures
from shardbeat.emulator.server import EmulatorServer
from shardbeat.runtime.output import RecordWriter
from shardbeat.runtime.runner import Runner

ROOT = Path(__file__).parent.parent
SCHEMA = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "record.schema.json").read_text()))
Record = dict[str, Any]


def fixtures(timeout: int = 3, shards: int = 6) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ROOT / "plugin/shardbeat/emulator/default_fixtures.json").read_text())
    ls = doc["sls"]["projects"]["demo-project"]["logstores"]["demo-logstore"]
    ls["shards"] = shards
    ls["consumer_groups"]["demo-group"]["timeout"] = timeout
    return doc


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(parse_fixtures(fixtures())).start()
    yield server
    server.stop()


class InProcess:
    """A Runner on a thread, its records read back from a pipe."""

    def __init__(self, groups: list[dict[str, Any]], base_dir: Path | None = None) -> None:
        config = config_from_dict({"groups": groups}, base_dir=base_dir).config
        self._r, w = os.pipe()
        self.writer = RecordWriter(w)
        self.runner = Runner(config.groups, self.writer)
        self.records: list[Record] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self._thread = threading.Thread(target=self.runner.run, daemon=True)
        self._thread.start()
        self._w = w

    def _read(self) -> None:
        with os.fdopen(self._r, "rb") as stream:
            for line in stream:
                rec = json.loads(line)
                SCHEMA.validate(rec)
                with self._cond:
                    self.records.append(rec)
                    self._cond.notify_all()

    def wait_for(self, pred: Callable[[Record], bool], timeout: float = 30.0) -> Record:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for rec in self.records:
                    if pred(rec):
                        return rec
                left = deadline - time.monotonic()
                assert left > 0, f"no such record; got {[r['event'] for r in self.records]}"
                self._cond.wait(left)

    def stop(self) -> None:
        self.runner.stop()
        self._thread.join(5)
        os.close(self._w)


def sls(emulator: EmulatorServer, **over: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "provider": "sls",
        "endpoint": emulator.url,
        "project": "demo-project",
        "logstore": "demo-logstore",
        "consumer_group": "demo-group",
        "consumer": "c1",
        "credentials": {"access_key_id": "emulator-akid", "access_key_secret": "emulator-secret"},
        "heartbeat_interval": 0.3,
        "timeout": 3,
    }
    group.update(over)
    return group


def is_event(name: str, **fields: Any) -> Callable[[Record], bool]:
    return lambda r: r["event"] == name and all(r.get(k) == v for k, v in fields.items())


def beats(emulator: EmulatorServer, consumer: str) -> list[dict[str, Any]]:
    """The heartbeats the server answered for one consumer, oldest first."""
    receipts, _ = emulator.world.receipts(0)
    return [j for j in (r.to_json() for r in receipts) if j["consumer"] == consumer and j["status"] == 200]


def test_release_on_ack_holds_revoked_shards_until_acked(emulator: EmulatorServer) -> None:
    # 1 s beats (a 0.9 s call budget): at 0.3 s a loaded machine timed beats out, and a run of them
    # ends a's lease, which hands its shards on by the lease rule, not by the ack this test is about.
    a = InProcess([sls(emulator, consumer="a", release="ack", release_grace=60, heartbeat_interval=1.0)])
    b: InProcess | None = None
    try:
        a.wait_for(lambda r: r["event"] == "assignment" and len(r["assigned"]["demo-logstore"]) == 6)
        b = InProcess([sls(emulator, consumer="b", heartbeat_interval=1.0)])
        revoke = a.wait_for(lambda r: r["event"] == "assignment" and r["revoked"] != {})
        revoked = revoke["revoked"]["demo-logstore"]
        assert len(revoked) == 3
        # Several beats of both after the revoke (waited for, not slept: a loaded machine beats late):
        # each of a's still lists the revoked shards, and b, asking all along, is given none of them.
        na, nb = len(beats(emulator, "a")), len(beats(emulator, "b"))
        assert wait_for(
            lambda: len(beats(emulator, "a")) >= na + 3 and len(beats(emulator, "b")) >= nb + 2, 30
        )
        waiting = beats(emulator, "a")[na:]
        assert all(set(revoked) <= set((x["held"] or {}).get("demo-logstore", [])) for x in waiting), waiting
        assert not any(r["event"] == "assignment" and r["assigned"] for r in b.records)
        a.runner.release(a.runner.sessions, {"demo-logstore": frozenset(revoked)})
        got = b.wait_for(lambda r: r["event"] == "assignment" and r["assigned"] != {})
        assert got["assigned"]["demo-logstore"] == revoked
    finally:
        a.stop()
        if b:
            b.stop()


def test_immediate_release_beats_at_once_after_writing_the_revoke() -> None:
    """The handover's own step: a's beat that frees the shards follows the one that revoked them at
    once, not a tick later. Its own server (a 10 s group timeout) lets the beats be 2 s apart, so a
    loaded machine's lateness stays far from the tick this tells apart; the rule is a step test
    (test_driver_release), how fast a handover goes is the benchmark's."""
    interval = 2.0
    server = EmulatorServer(parse_fixtures(fixtures(timeout=10))).start()
    a = InProcess([sls(server, consumer="a", heartbeat_interval=interval, timeout=10)])
    b: InProcess | None = None
    try:
        a.wait_for(lambda r: r["event"] == "assignment" and len(r["assigned"]["demo-logstore"]) == 6)
        b = InProcess([sls(server, consumer="b", heartbeat_interval=interval, timeout=10)])
        revoke = a.wait_for(lambda r: r["event"] == "assignment" and r["revoked"] != {})
        revoked = set(revoke["revoked"]["demo-logstore"])
        got = b.wait_for(lambda r: r["event"] == "assignment" and r["assigned"] != {})
        assert set(got["assigned"]["demo-logstore"]) == revoked
        held = [(x["mono"], set((x["held"] or {}).get("demo-logstore", []))) for x in beats(server, "a")]
        freed = next(i for i in range(1, len(held)) if revoked <= held[i - 1][1] and not held[i][1] & revoked)
        gap = held[freed][0] - held[freed - 1][0]  # the next tick would be `interval` later
        assert gap < interval / 2, f"the freeing beat came {gap:.2f}s after the revoking one"
    finally:
        a.stop()
        if b:
            b.stop()
        server.stop()


def test_status_record(emulator: EmulatorServer) -> None:
    p = InProcess([sls(emulator)])
    try:
        p.wait_for(is_event("assignment"))
        p.runner.emit_status()
        rec = p.wait_for(is_event("status"))
        assert rec["assigned"] == {"demo-logstore": [0, 1, 2, 3, 4, 5]}
        assert rec["counters"]["beats"] >= 1 and 0 < rec["lease_remaining_ms"] <= 2000
        assert rec["latency_ms"]["count"] >= 1 and 0 < rec["latency_ms"]["p50"] <= rec["latency_ms"]["p99"]
    finally:
        p.stop()


def test_rotated_credentials_file_is_picked_up_without_restart(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"access_key_id": "emulator-akid", "access_key_secret": "old-wrong-secret"}))
    creds.chmod(0o600)
    group = sls(emulator, credentials_file=str(creds))
    del group["credentials"]
    p = InProcess([group], base_dir=tmp_path)
    try:
        p.wait_for(lambda r: r["event"] == "error" and r["error"]["code"] == "SignatureNotMatch")
        creds.write_text(
            json.dumps({"access_key_id": "emulator-akid", "access_key_secret": "emulator-secret"})
        )
        rec = p.wait_for(is_event("assignment"), timeout=15)  # the slow retry picks up the new file
        assert rec["assigned"]
        assert not any("old-wrong-secret" in json.dumps(r) for r in p.records)
    finally:
        p.stop()


def test_a_broken_writer_stops_claims_even_when_nobody_told_the_runner(emulator: EmulatorServer) -> None:
    """Belt and braces for the principle: a beat checks the writer itself before it claims."""
    node = InProcess([sls(emulator)])  # the writer has no on_broken: nobody tells the runner
    result: list[int] = []
    try:
        node.wait_for(is_event("assignment"))

        def hopeless(record: Record) -> bytes:
            raise ValueError("nothing encodes any more")

        node.writer._encode = hopeless
        broke_at = time.time()
        node._thread.join(30)
        assert not node._thread.is_alive(), "the runner kept going with a broken writer"
        result.append(0)
        # The answer to the first beat the server got after the break (or to one in flight then) is
        # the first record that fails; no beat may claim after it, however late a loaded machine ran.
        late = [
            r
            for r in emulator.world.receipts()[0]
            if r.call.consumer == "c1" and r.wall > broke_at and any((r.call.held or {}).values())
        ]
        assert len(late) <= 1, [(r.seq, r.wall - broke_at) for r in late]
    finally:
        if not result:
            node.runner.stop()
        os.close(node._w)


def test_a_stop_whose_last_records_cannot_be_written_exits_1(emulator: EmulatorServer) -> None:
    """A reader that stopped reading never sees `lost`/`stopped`: the stop is not reported as clean."""
    config = config_from_dict({"groups": [sls(emulator)]}).config
    r, w = os.pipe()
    os.set_blocking(w, False)
    while True:  # fill the pipe: nobody reads it
        try:
            os.write(w, b"x" * 65536)
        except BlockingIOError:
            break
    os.set_blocking(w, True)
    writer = RecordWriter(w)
    runner = Runner(config.groups, writer)
    exit_status: list[int] = []
    thread = threading.Thread(target=lambda: exit_status.append(runner.run()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not any(s.membership.claim() for s in runner.sessions) and time.monotonic() < deadline:
            time.sleep(0.05)
        runner.stop()
        thread.join(10)
        assert exit_status == [1]
    finally:
        runner.stop()
        os.close(r)  # the writer thread's blocked write ends (EPIPE)
        os.close(w)


@contextlib.contextmanager
def claiming_on_a_pipe(emulator: EmulatorServer) -> Iterator[tuple[Runner, threading.Thread, list[int], int]]:
    """A runner writing its records into a pipe, run until it claims shards: (runner, its thread, its
    exit status once run returns, the pipe's read end, the caller's). Stopped, and the write end
    closed, after."""
    config = config_from_dict({"groups": [sls(emulator)]}).config
    r, w = os.pipe()
    runner = Runner(config.groups, RecordWriter(w))
    exit_status: list[int] = []
    thread = threading.Thread(target=lambda: exit_status.append(runner.run()), daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: any(s.membership.claim() for s in runner.sessions), 10)
        yield runner, thread, exit_status, r
    finally:
        runner.stop()
        thread.join(5)
        os.close(w)


def test_abandon_drops_every_claim_and_the_run_exits_1(emulator: EmulatorServer) -> None:
    with claiming_on_a_pipe(emulator) as (runner, thread, exit_status, r):
        try:
            runner.abandon("test: stdout gone")
            assert all(not s.membership.claim() for s in runner.sessions)
            thread.join(5)
            assert exit_status == [1]
        finally:
            os.close(r)


def test_a_flood_of_refused_commits_is_reported_at_a_bounded_rate(emulator: EmulatorServer) -> None:
    p = InProcess([sls(emulator, checkpoints={"commit_interval": 0.2})])
    try:
        p.wait_for(is_event("assignment"))
        target = p.runner.drivers
        for _ in range(200):  # a client looping on a commit of a shard this node does not hold
            assert p.runner.commit(target, {("demo-logstore", 999): "MTUwMDAwMDAwMA=="}) == 0
        p.runner.emit_status()
        p.wait_for(is_event("status"))
    finally:
        p.stop()
    refused = [r for r in p.records if r["event"] == "error" and r.get("source") == "control"]
    assert 1 <= len(refused) <= 12  # the burst, and perhaps one more as the budget refills
    assert all(r["error"]["code"] == "NotOwner" for r in refused)


class _DateRewriter:
    """The process's own exchange, with every answer's Date replaced (a proxy that mangles it)."""

    def __init__(self, date: str) -> None:
        from shardbeat.runtime.http_loop import HttpLoop

        self.inner = HttpLoop()
        self.date = date

    def start(self, endpoint: Any, request: Any, deadline: float, done: Callable[[Any], None]) -> None:
        from dataclasses import replace

        from shardbeat.providers.base import HttpResponse

        def rewrite(result: Any) -> None:
            if isinstance(result, HttpResponse):
                result = replace(result, headers={**result.headers, "date": self.date})
            done(result)

        self.inner.start(endpoint, request, deadline, rewrite)

    def poll(self, timeout: float | None) -> None:
        self.inner.poll(timeout)

    def wakeup(self) -> None:
        self.inner.wakeup()

    def close(self) -> None:
        self.inner.close()


def test_a_date_of_year_0000_moves_no_signing_clock_and_is_logged_once(
    emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    """It was read as 2000-01-01: every request was then signed 26 years back and refused
    (RequestTimeExpired) for as long as the Date came so."""
    # 1 s beats: a 0.9 s call budget that a loaded machine does not run past (a Timeout is an error
    # record too, and this test allows none).
    config = config_from_dict({"groups": [sls(emulator, heartbeat_interval=1.0)]}).config
    r, w = os.pipe()
    runner = Runner(config.groups, RecordWriter(w), exchange=_DateRewriter("Sat, 01 Jan 0000 00:00:00 GMT"))
    lines: list[Record] = []

    def read() -> None:
        with os.fdopen(r, "rb") as stream:
            lines.extend(json.loads(line) for line in stream)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with caplog.at_level("WARNING"):
        thread = threading.Thread(target=runner.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            receipts, _ = emulator.world.receipts(0)
            if sum(1 for x in receipts if x.to_json()["status"] == 200) >= 4:
                break
            time.sleep(0.05)
        runner.stop()
        thread.join(5)
    os.close(w)
    reader.join(5)
    receipts, _ = emulator.world.receipts(0)
    assert [x.to_json()["status"] for x in receipts][:4] == [200] * 4  # every beat signed with our clock
    assert runner.drivers[0].server_clock.offset == 0.0
    assert not [rec for rec in lines if rec["event"] == "error"]
    notes = [rec.getMessage() for rec in caplog.records if "Date header" in rec.getMessage()]
    assert len(notes) == 1 and "'Sat, 01 Jan 0000 00:00:00 GMT'" in notes[0], notes


def test_an_answer_that_cannot_be_read_fails_its_call_not_the_loop(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transport failure's message is built by a module imported lazily, on the loop thread: a
    failing import there (a package upgraded under the running process, a corrupt bytecode file)
    ended the loop, and the process, with shards held and no `lost` written."""
    from shardbeat.runtime import net_errors

    def unloadable(*args: object) -> str:
        raise ImportError("cannot import name 'describe' (an upgraded package)")

    monkeypatch.setattr(net_errors, "describe", unloadable)
    node = InProcess([sls(emulator)])
    try:
        node.wait_for(is_event("assignment"))
        with emulator.world.lock:
            emulator.world.faults.add(
                [{"consumer": "c1", "effect": "reset", "count": 3}], emulator.world.mono_now()
            )
        # The reset's error (a loaded machine may time a 0.3 s beat out first: another error record)
        error = node.wait_for(lambda r: r["event"] == "error" and r["error"]["code"] != "Timeout")
        assert error["error"]["code"] == "InternalError"
        assert "an upgraded package" in error["error"]["message"]
        n = len(node.records)
        node.wait_for(lambda r: r["event"] == "lease" and node.records.index(r) >= n)  # it beats on
        assert node._thread.is_alive()
    finally:
        node.stop()


def test_a_bug_in_the_loop_stops_it_like_a_stop_and_exits_1(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside any call (where one group's bug is contained), a bug used to end `run` with an
    exception: no `lost` for the shards held, downstream left to find out from lease_expires."""

    def broken(now: float) -> float | None:
        raise RuntimeError("injected bug in the loop")

    with claiming_on_a_pipe(emulator) as (runner, thread, exit_status, r):
        monkeypatch.setattr(runner._timeline, "wait", broken)
        thread.join(5)
        assert exit_status == [1]
    with os.fdopen(r, "rb") as stream:
        events = [json.loads(line) for line in stream]
    assert [rec["event"] for rec in events][-2:] == ["lost", "stopped"]
    assert events[-2]["reason"] == "stopped"
