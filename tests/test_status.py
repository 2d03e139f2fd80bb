"""`shardbeat status` and the control socket's replies, against a real `shardbeat run`; the text view
when stdout is a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from fault_kit import INTERVAL, TIMEOUT, fast_fixtures
from harness import Plugin, shardbeat_in_process, write_config
from shardbeat.emulator.server import EmulatorServer
from shardbeat.schemas import load_schema

pytestmark = [pytest.mark.slow, pytest.mark.emulator_fixtures(fast_fixtures())]
REPLY = jsonschema.Draft202012Validator(load_schema("reply"))


def group(emulator: EmulatorServer, provider: str, consumer: str) -> dict[str, Any]:
    g: dict[str, Any] = dict(fast_fixtures()["demo"][provider])
    g.update(endpoint=emulator.url, consumer=consumer, heartbeat_interval=INTERVAL, timeout=TIMEOUT)
    return g


def status_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shardbeat", "status", *args],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, **(env or {})},
    )


def status_here(*args: str) -> subprocess.CompletedProcess[str]:
    """`status_cli` in this process (the same cli.main without a child's start-up); each test's first
    question still goes through a real `shardbeat status` process."""
    return shardbeat_in_process("status", *args)


def ask(path: Path, *docs: dict[str, Any]) -> list[dict[str, Any]]:
    """Send the messages on one connection, half-close, read every reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect(str(path))
        c.sendall(b"".join((json.dumps(d) + "\n").encode() for d in docs))
        c.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    replies = [json.loads(line) for line in data.splitlines()]
    for reply in replies:
        REPLY.validate(reply)
    return replies


@pytest.fixture
def running(emulator: EmulatorServer, tmp_path: Path) -> Iterator[tuple[Plugin, Path, Path]]:
    sock = tmp_path / "ctl.sock"
    cfg = write_config(
        tmp_path / "c.json",
        [group(emulator, "sls", "node-1"), group(emulator, "cls", "node-1")],
        control={"socket": str(sock)},
        runtime_dir=str(tmp_path / "run"),
    )
    plugin = Plugin(["run", "--config", str(cfg)])
    try:
        assert plugin.wait_for(lambda rs: len([r for r in rs if r["event"] == "assignment"]) == 2, 30)
        yield plugin, sock, cfg
    finally:
        plugin.kill()


def test_status_prints_one_row_per_group_and_writes_no_record(running: tuple[Plugin, Path, Path]) -> None:
    plugin, sock, cfg = running
    out = status_cli("--socket", str(sock))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["PROVIDER", "GROUP", "CONSUMER", "HELD"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"sls", "cls"}
    assert rows["sls"][1:5] == ["demo-group", "node-1", "6", "[0-5]"]
    assert rows["sls"][6].endswith("s") and float(rows["sls"][6][:-1]) > 0  # lease left
    by_config = status_here("--config", str(cfg), "--json")  # needs no credentials in the environment
    assert by_config.returncode == 0, by_config.stderr
    groups = json.loads(by_config.stdout)["groups"]
    assert {(g["provider"], g["consumer"]) for g in groups} == {("sls", "node-1"), ("cls", "node-1")}
    assert all(g["lease_remaining_ms"] > 0 and g["last_latency_ms"] is not None for g in groups)
    time.sleep(2 * INTERVAL)
    assert not plugin.events("status")  # asking wrote nothing downstream
    # the log says what changed, at INFO, without Python reprs
    assert (
        "INFO shardbeat.runner: sls:demo-project/demo-logstore/demo-group/node-1: assignment (epoch 1): "
        "added demo-logstore[0-5], revoked []; holds demo-logstore[0-5]" in plugin.log()
    )
    assert "{'" not in plugin.log() and "frozenset" not in plugin.log()


def test_every_op_is_acknowledged_on_its_connection(running: tuple[Plugin, Path, Path]) -> None:
    plugin, sock, _ = running
    replies = ask(
        sock,
        {"op": "status"},
        {"op": "heartbeat", "group": "demo-group", "provider": "sls"},
        {"op": "released", "group": "demo-group", "provider": "sls", "shards": {"demo-logstore": [1]}},
        {"op": "held", "group": "demo-group", "provider": "sls", "shards": {"demo-logstore": [1]}},
        {"op": "heartbeat", "group": "no-such-group"},
        {"op": "fly"},
        {"op": "reload"},
    )
    assert [r.get("op") for r in replies] == [
        "status", "heartbeat", "released", "held", "heartbeat", None, "reload"
    ]  # fmt: skip
    assert len(replies[0]["groups"]) == 2
    assert plugin.wait_for(lambda rs: len([r for r in rs if r["event"] == "status"]) == 2, 3)  # records too
    assert replies[1]["groups"] == [{"provider": "sls", "group": "demo-group", "consumer": "node-1"}]
    released = replies[2]["groups"][0]
    assert released["released"] == {} and released["not_releasing"] == {"demo-logstore": [1]}
    assert replies[4] == {
        "op": "heartbeat",
        "ok": False,
        "error": {
            "code": "UnknownGroup",
            "message": "heartbeat: no configured group matches group no-such-group",
        },
    }
    assert replies[5]["ok"] is False and replies[5]["error"]["code"] == "UnknownOp"
    assert ask(sock, {"op": "stop"}) == [{"op": "stop", "ok": True}]
    assert plugin.proc.wait(5) == 0


def test_released_confirms_what_it_released(emulator: EmulatorServer, tmp_path: Path) -> None:
    sock = tmp_path / "a.sock"
    acking = dict(group(emulator, "sls", "ack-a"), release="ack", release_grace=30)
    a = Plugin(
        ["run", "--config", str(write_config(tmp_path / "a.json", [acking], control={"socket": str(sock)}))]
    )
    b: Plugin | None = None
    try:
        assert a.wait_for(lambda rs: any(r["event"] == "assignment" for r in rs), 30)
        b = Plugin(
            ["run", "--config", str(write_config(tmp_path / "b.json", [group(emulator, "sls", "ack-b")]))]
        )
        assert a.wait_for(lambda rs: any(r["event"] == "assignment" and r["revoked"] for r in rs), 30)
        revoked = next(r for r in a.events("assignment") if r["revoked"])["revoked"]["demo-logstore"]
        table = status_here("--socket", str(sock)).stdout.splitlines()[1].split()
        assert table[5] == str(len(revoked))  # RELEASING
        reply = ask(
            sock, {"op": "released", "group": "demo-group", "shards": {"demo-logstore": [*revoked, 99]}}
        )
        entry = reply[0]["groups"][0]
        assert entry["released"] == {"demo-logstore": sorted(revoked)}
        assert entry["not_releasing"] == {"demo-logstore": [99]}
        assert entry["releasing"] == {}
    finally:
        a.kill()
        if b is not None:
            b.kill()


def test_status_says_what_is_wrong_when_it_cannot_ask(tmp_path: Path) -> None:
    missing = status_cli("--socket", str(tmp_path / "none.sock"))
    assert missing.returncode == 1
    assert f"no control socket at {tmp_path / 'none.sock'}" in missing.stderr
    assert "control.socket" in missing.stderr and "Traceback" not in missing.stderr
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    not_socket = status_here("--socket", str(plain))
    assert not_socket.returncode == 1 and "is not a socket" in not_socket.stderr
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    refused = status_here("--socket", str(stale))
    assert refused.returncode == 1 and "nothing listens" in refused.stderr
    silent = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(silent))
        server.listen(1)
        mute = status_here("--socket", str(silent), "--timeout", "0.5")
    assert mute.returncode == 1 and "accepted but sent no answer within 0.5s" in mute.stderr
    entry = {"provider": "sls", "endpoint": "e", "project": "proj", "logstore": "logs"}
    cfg = write_config(tmp_path / "c.json", [{**entry, "consumer_group": "grp", "consumer": "c"}])
    no_socket = status_here("--config", str(cfg))
    assert no_socket.returncode == 2 and "sets no control.socket" in no_socket.stderr
    with_var = write_config(
        tmp_path / "v.json",
        json.loads(cfg.read_text())["groups"],
        control={"socket": "${SHARDBEAT_TEST_UNSET_NODE}.sock"},
    )
    unset = status_here("--config", str(with_var))
    assert (
        unset.returncode == 2 and "environment variable SHARDBEAT_TEST_UNSET_NODE is not set" in unset.stderr
    )


def test_status_watch_refreshes(running: tuple[Plugin, Path, Path]) -> None:
    from shardbeat.runtime.status_client import run_status

    _, sock, _ = running
    out: list[str] = []

    class Out:
        def write(self, text: str) -> None:
            out.append(text)

        def flush(self) -> None: ...

        def isatty(self) -> bool:
            return False

    sleeps: list[float] = []
    rc = run_status(str(sock), as_json=True, watch=0.5, timeout=5, out=Out(), sleep=sleeps.append, polls=3)  # type: ignore[arg-type]
    assert rc == 0 and sleeps == [0.5, 0.5]
    assert [len(json.loads(x)["groups"]) for x in out] == [2, 2, 2]


def test_a_terminal_gets_the_text_view(emulator: EmulatorServer, tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.json", [group(emulator, "sls", "tty")], runtime_dir=str(tmp_path / "run")
    )
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shardbeat", "run", "--config", str(cfg)],
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TERM": "xterm", "NO_COLOR": "1"},
    )
    os.close(child)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b" lease " not in seen.split(b"held", 1)[-1] and time.monotonic() < deadline:
            if select.select([main], [], [], 0.2)[0]:
                seen += os.read(main, 65536)
    finally:
        proc.terminate()
        proc.wait(5)
        os.close(main)
    first = seen.decode().splitlines()[0]
    assert " sls demo-group +[0-5] -[] held [0-5] lease " in first, seen
    assert b"{" not in seen and b"\x1b[" not in seen  # not JSON; NO_COLOR honoured


@pytest.mark.parametrize("every", ["1e-9", "0.05"])
def test_a_watch_below_the_floor_is_a_usage_error(
    every: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # --watch 1e-9 polled the socket in a busy loop, writing megabytes a second to the terminal.
    from shardbeat import cli
    from shardbeat.runtime import status_client

    monkeypatch.setattr(status_client, "run_status", lambda *a, **k: 0)  # reached: the flag was taken
    assert cli.main(["status", "--socket", "/nonexistent.sock", "--watch", every]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "argument --watch: give at least 0.1 seconds" in captured.err
