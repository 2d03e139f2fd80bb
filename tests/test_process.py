"""The process contract, end to end: real `shardbeat run` subprocesses against the emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import StartPlugin
from fault_kit import INTERVAL, TIMEOUT, fast_fixtures
from harness import Plugin, wait_for, write_config
from shardbeat.emulator.fixtures import load_fixtures
from shardbeat.emulator.server import EmulatorServer

pytestmark = [pytest.mark.slow, pytest.mark.emulator_fixtures(fast_fixtures())]

SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "record.schema.json").read_text())
RECORD = jsonschema.Draft202012Validator(SCHEMA)


def default_doc() -> dict[str, Any]:
    path = Path(__file__).parent.parent / "plugin" / "shardbeat" / "emulator" / "default_fixtures.json"
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def group(emulator: EmulatorServer, provider: str, consumer: str, **over: Any) -> dict[str, Any]:
    g = dict(default_doc()["demo"][provider])
    g.update(endpoint=emulator.url, consumer=consumer, heartbeat_interval=INTERVAL, timeout=TIMEOUT)
    g.update(over)
    return g


def all_shards(provider: str) -> dict[str, set[int]]:
    if provider == "sls":
        return {"demo-logstore": set(range(6))}
    return {"demo-topic-a": {1, 2, 3}, "demo-topic-b": {1, 2, 3}}


def owned(p: Plugin, provider: str) -> set[tuple[str, int]]:
    return {(t, s) for t in all_shards(provider) for s in p.current(t)}


def disjoint_balanced_cover(plugins: list[Plugin], provider: str) -> bool:
    sets = [owned(p, provider) for p in plugins]
    everything = {(t, s) for t, ids in all_shards(provider).items() for s in ids}
    union: set[tuple[str, int]] = set().union(*sets)
    return (
        union == everything
        and sum(len(s) for s in sets) == len(everything)
        and max(map(len, sets)) - min(map(len, sets)) <= 1
    )


def check_stream(p: Plugin) -> None:
    for _, rec in p.records:
        RECORD.validate(rec)
    assert all(line.endswith(b"\n") and b"\n" not in line[:-1] for line in p.raw_stdout)


def start(run: StartPlugin, tmp_path: Path, name: str, groups: list[dict[str, Any]]) -> Plugin:
    return run(["run", "--config", str(write_config(tmp_path / f"{name}.json", groups))])


def test_two_embedded_demos_on_one_machine_both_run(run_plugin: StartPlugin) -> None:
    """Each embedded emulator is a private world: the one-instance lock must not make them refuse
    each other (`make run` in two terminals)."""
    first, second = run_plugin(["run", "--emulator"]), run_plugin(["run", "--emulator"])
    try:
        for p in (first, second):
            assert p.wait_for(lambda rs: any(r["event"] == "assignment" for r in rs), 30), p.log()
    finally:
        for p in (first, second):
            p.terminate(timeout=5)
            p.finish()


def test_embedded_emulator_prints_assignment_then_stops_cleanly_on_sigterm(run_plugin: StartPlugin) -> None:
    p = run_plugin(["run", "--emulator", "--interval", "0.5"])
    try:
        # How soon the first record comes is a timing target: `make bench` measures it (a wall bound
        # here failed on a loaded CI machine: 6.3 s); this test checks that it comes, and what follows.
        assert p.wait_for(lambda rs: any(r["event"] == "assignment" for r in rs), 30), p.log()
        assert p.wait_for(lambda rs: any(r["event"] == "lease" for r in rs), 30)
        t_sig = time.monotonic()
        assert p.terminate(timeout=5) == 0
        assert time.monotonic() - t_sig < 2.0
        p.finish()
        events = [r["event"] for _, r in p.records]
        assert events[0] == "assignment"
        assert events[-2:] == ["lost", "stopped"]
        assert p.events("lost")[-1]["reason"] == "stopped"
        check_stream(p)
        assert "Traceback" not in p.log()
    finally:
        p.kill()


def test_sigint_stops_cleanly_too(run_plugin: StartPlugin, emulator: EmulatorServer, tmp_path: Path) -> None:
    p = start(run_plugin, tmp_path, "a", [group(emulator, "sls", "c1")])
    try:
        assert p.wait_for(lambda rs: any(r["event"] == "assignment" for r in rs), 30), p.log()
        p.proc.send_signal(signal.SIGINT)
        assert p.proc.wait(5) == 0
        p.finish()
        assert p.records[-1][1]["event"] == "stopped"
    finally:
        p.kill()


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_three_plugins_converge_and_survivors_take_over_a_killed_peer(
    run_plugin: StartPlugin, emulator: EmulatorServer, tmp_path: Path, provider: str
) -> None:
    plugins = [
        start(run_plugin, tmp_path, f"p{i}", [group(emulator, provider, f"node-{i}")]) for i in range(3)
    ]
    try:
        assert wait_for(lambda: disjoint_balanced_cover(plugins, provider), 20), [
            owned(p, provider) for p in plugins
        ] + [plugins[0].log()]
        victim, survivors = plugins[0], plugins[1:]
        victim_shards = owned(victim, provider)
        assert victim_shards
        victim.kill()
        t_kill = time.monotonic()
        assert wait_for(lambda: disjoint_balanced_cover(survivors, provider), 15), [
            owned(p, provider) for p in survivors
        ]
        took = time.monotonic() - t_kill
        assert took <= TIMEOUT + 2 * INTERVAL, f"takeover took {took:.2f}s"
        assert time.monotonic() - t_kill >= TIMEOUT - INTERVAL - 0.5  # not before the server let go
        for p in survivors:
            assert p.terminate() == 0
            p.finish()
            check_stream(p)
    finally:
        for p in plugins:
            p.kill()


def test_mixed_process_holds_an_sls_and_a_cls_group(
    run_plugin: StartPlugin, emulator: EmulatorServer, tmp_path: Path
) -> None:
    p = start(run_plugin, tmp_path, "mixed", [group(emulator, "sls", "m1"), group(emulator, "cls", "m1")])
    try:
        both = {"sls", "cls"}
        assert p.wait_for(lambda rs: {r["provider"] for r in rs if r["event"] == "assignment"} == both, 30)
        sls = next(r for r in p.events("assignment") if r["provider"] == "sls")
        cls = next(r for r in p.events("assignment") if r["provider"] == "cls")
        assert sls["assigned"] == {"demo-logstore": [0, 1, 2, 3, 4, 5]}
        assert cls["assigned"] == {"demo-topic-a": [1, 2, 3], "demo-topic-b": [1, 2, 3]}
        assert p.terminate() == 0
        p.finish()
        assert [r["provider"] for r in p.events("stopped")] == ["sls", "cls"]
        check_stream(p)
    finally:
        p.kill()


@pytest.mark.parametrize(
    ("provider", "creds", "code"),
    [
        (
            "sls",
            {"access_key_id": "emulator-akid", "access_key_secret": "not-the-secret"},
            "SignatureNotMatch",
        ),
        (
            "cls",
            {"secret_id": "emulator-secret-id", "secret_key": "not-the-secret"},
            "AuthFailure.SignatureFailure",
        ),
    ],
)
def test_wrong_secret_is_an_error_record_not_a_crash(
    run_plugin: StartPlugin,
    emulator: EmulatorServer,
    tmp_path: Path,
    provider: str,
    creds: dict[str, str],
    code: str,
) -> None:
    p = start(run_plugin, tmp_path, "bad", [group(emulator, provider, "c1", credentials=creds)])
    try:
        assert p.wait_for(lambda rs: any(r["event"] == "error" for r in rs), 10), p.log()
        err = p.events("error")[0]
        assert err["error"]["code"] == code
        assert err["retry_in_ms"] >= 1000 * INTERVAL  # slow retry: the operator has to fix the key
        time.sleep(0.5)
        assert p.proc.poll() is None
        assert p.terminate() == 0
        p.finish()
        everything = b"".join(p.raw_stdout).decode() + p.log()
        assert "not-the-secret" not in everything
        assert not p.events("assignment")
        check_stream(p)
    finally:
        p.kill()


def test_closed_stdout_stops_non_zero_and_says_why(emulator: EmulatorServer, tmp_path: Path) -> None:
    """The reader went away: nobody can be told about shards any more, so this node lets go of them
    (tests/test_writer_death.py checks the claims) and exits 1 with one clear line, no traceback."""
    cfg = write_config(tmp_path / "c.json", [group(emulator, "sls", "c1")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "shardbeat", "run", "--config", str(cfg)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert json.loads(proc.stdout.readline())["event"] == "assignment"
        proc.stdout.close()  # the host went away
        assert proc.wait(10) == 1
        err = proc.stderr.read().decode()
        assert "Traceback" not in err and "Broken pipe" not in err
        assert "stdout was closed by the reader" in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_emulator_verb_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "shardbeat", "emulator", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert "listening on http://127.0.0.1:" in line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_default_fixtures_load() -> None:
    assert load_fixtures(None) is not None
