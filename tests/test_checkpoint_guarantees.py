"""Checkpoint fencing with a real `shardbeat run`: a node frozen (SIGSTOP) past its lease with a
commit pending resumes with `lost` first, drops the value, and nothing of it reaches the server."""

from __future__ import annotations

import base64
import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

import ownership
from fault_kit import EARLY, TIMEOUT, control_socket, fast_fixtures, records, start_plugin
from shardbeat.emulator.server import EmulatorServer

pytestmark = [pytest.mark.slow, pytest.mark.emulator_fixtures(fast_fixtures())]

TOPIC = {"sls": "demo-logstore", "cls": "demo-topic-a"}


def value(provider: str, n: int) -> Any:
    return base64.b64encode(str(n).encode()).decode() if provider == "sls" else n


def commits(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return [r.to_json() for r in emulator.world.receipts()[0] if r.call.action in ownership.COMMIT_ACTIONS]


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_a_frozen_node_commits_nothing_and_says_lost_first(
    emulator: EmulatorServer, tmp_path: Path, provider: str
) -> None:
    p = start_plugin(emulator, tmp_path, provider, "frozen", {"commit_interval": 1.0})
    topic = TOPIC[provider]
    conn: socket.socket | None = None
    try:
        assert p.wait_for(lambda rs: any(r["event"] == "lease" for r in rs), 30), p.log()
        shard = min(p.current(topic))
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(control_socket(tmp_path, "frozen")))

        def commit(n: int, **extra: Any) -> None:
            assert conn is not None
            values = {topic: {str(shard): value(provider, n)}}
            message = {"op": "commit", "group": "demo-group", "checkpoints": values, **extra}
            conn.sendall(json.dumps(message).encode() + b"\n")

        commit(1)
        assert p.wait_for(lambda rs: any(r["event"] == "committed" for r in rs), 5), p.log()
        assert [c["checkpoints"] for c in commits(emulator)] == [{topic: {str(shard): value(provider, 1)}}]
        commit(2)  # pending (commit_interval 1 s) when the process freezes
        time.sleep(0.1)
        p.proc.send_signal(signal.SIGSTOP)
        frozen_at = emulator.world.mono_now()
        time.sleep(TIMEOUT + 0.5)
        resumed = time.time()
        p.proc.send_signal(signal.SIGCONT)
        assert p.wait_for(
            lambda rs: any(r["event"] == "error" and r["error"]["code"] == "NotOwner" for r in rs), 5
        ), p.log()
        time.sleep(1.5)
        after = [r for r in records(p) if ownership.parse_time(r["time"]) >= resumed - EARLY]
        assert after[0]["event"] == "lost" and after[0]["reason"] == "lease_expired", json.dumps(after[:3])
        dropped = next(r for r in after if r["event"] == "error" and r["error"]["code"] == "NotOwner")
        assert dropped["source"] == "commit" and json.dumps(value(provider, 2)) in dropped["error"]["message"]
        # nothing reached the server after the freeze: value 2 was never sent
        late = [c for c in commits(emulator) if c["mono"] >= frozen_at]
        assert late == [], late
        assert [c["checkpoints"] for c in commits(emulator)] == [{topic: {str(shard): value(provider, 1)}}]
        assert not [r for r in after if r["event"] == "committed"]
        # Downstream, frozen with it, still has a value from before: with the epoch it was made under,
        # it is refused even though the node holds the shard again.
        epoch = next(r["epoch"] for r in records(p) if r["event"] == "assignment")
        assert any(r["event"] == "assignment" and r["epoch"] > epoch for r in after)
        commit(3, epoch=epoch)
        assert p.wait_for(
            lambda rs: any(r["error"]["code"] == "StaleEpoch" for r in rs if r["event"] == "error"), 5
        )
        time.sleep(1.2)
        assert not [c for c in commits(emulator) if c["mono"] >= frozen_at]
        assert p.terminate() == 0
        p.finish()
        assert "Traceback" not in p.log()
    finally:
        if conn is not None:
            conn.close()
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGCONT)
        p.kill()
