"""Shared by the fault-injection tests: a fast emulator fixture (6 shards, group timeout 3 s), its
admin API, plugin processes in one group, and their records as the ownership checker reads them."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ownership
from harness import Plugin, write_config
from shardbeat.emulator.fixtures import parse_fixtures
from shardbeat.emulator.server import EmulatorServer

ROOT = Path(__file__).parent.parent
INTERVAL, TIMEOUT = 0.5, 3
MARGIN = 1.0  # core.lease.default_margin(3)
SKEW = {"sls": 16 * 60.0, "cls": 6 * 60.0}  # beyond SLS's 15 min and CLS's 5 min windows
SKEW_CODE = {"sls": "RequestTimeExpired", "cls": "AuthFailure.SignatureExpire"}
WATCHDOG_LATE = 0.25  # a `lost` later than this after its lease was not "at once"
# Record times are truncated to the millisecond: a record written just after an instant a test took
# can carry a time up to 1 ms before it. Compare against instants moved back by this much.
EARLY = 0.002


def fast_fixtures() -> dict[str, Any]:
    """The default fixture with 6 shards (SLS) / 2 topics x 3 partitions (CLS), group timeout 3 s."""
    path = ROOT / "plugin" / "shardbeat" / "emulator" / "default_fixtures.json"
    doc: dict[str, Any] = copy.deepcopy(json.loads(path.read_text()))
    logstore = doc["sls"]["projects"]["demo-project"]["logstores"]["demo-logstore"]
    logstore["shards"] = 6
    logstore["consumer_groups"]["demo-group"]["timeout"] = TIMEOUT
    logset = doc["cls"]["logsets"]["demo-logset"]
    for topic in logset["topics"].values():
        topic["partitions"] = 3
    logset["consumer_groups"]["demo-group"]["timeout"] = TIMEOUT
    return doc


def all_shards(provider: str) -> set[ownership.Shard]:
    if provider == "sls":
        return {("demo-logstore", i) for i in range(6)}
    return {(t, p) for t in ("demo-topic-a", "demo-topic-b") for p in (1, 2, 3)}


@contextlib.contextmanager
def fast_emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(parse_fixtures(fast_fixtures())).start()
    try:
        yield server
    finally:
        server.stop()


def admin(emulator: EmulatorServer, method: str, path: str, doc: object = None) -> Any:
    data = None if doc is None else json.dumps(doc).encode()
    req = urllib.request.Request(
        emulator.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def start_plugin(
    emulator: EmulatorServer,
    tmp_path: Path,
    provider: str,
    consumer: str,
    checkpoints: dict[str, Any] | None = None,
) -> Plugin:
    """With `checkpoints`, the group has them and the plugin listens on control_socket(...)."""
    group = {**emulator.demo_config(provider), "consumer": consumer}
    group.update(heartbeat_interval=INTERVAL, timeout=TIMEOUT)
    extra: dict[str, Any] = {}
    if checkpoints is not None:
        group["checkpoints"] = checkpoints
        extra["control"] = {"socket": str(control_socket(tmp_path, consumer)), "stdin": "off"}
    path = write_config(tmp_path / f"{provider}-{consumer}.json", [group], **extra)
    return Plugin(["run", "--config", str(path), "--log-level", "debug"])


def control_socket(tmp_path: Path, consumer: str) -> Path:
    return tmp_path / f"{consumer}.sock"


TOPICS = {"sls": ("demo-logstore",), "cls": ("demo-topic-a", "demo-topic-b")}


class Committer(threading.Thread):
    """Downstream's side of checkpoints: every `period`, each node commits a fresh value for every
    shard it holds by its own records, over its control socket (a frozen node's messages wait in the
    socket). Values grow, so a stale one would show."""

    def __init__(self, plugins: dict[str, Plugin], tmp_path: Path, provider: str, period: float = 0.25):
        super().__init__(daemon=True)
        self.plugins = plugins
        self.tmp_path = tmp_path
        self.provider = provider
        self.period = period
        self.done = threading.Event()
        self.sent = 0
        self._sockets: dict[str, socket.socket] = {}

    def _send(self, name: str, message: dict[str, Any]) -> None:
        conn = self._sockets.get(name)
        try:
            if conn is None:
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.settimeout(0.2)
                conn.connect(str(control_socket(self.tmp_path, name)))
                self._sockets[name] = conn
            conn.sendall(json.dumps(message).encode() + b"\n")
            self.sent += 1
        except OSError:
            if conn is not None:
                conn.close()
            self._sockets.pop(name, None)

    def run(self) -> None:
        counter = 0
        while not self.done.wait(self.period):
            counter += 1
            value: Any = (
                base64.b64encode(str(counter).encode()).decode() if self.provider == "sls" else counter
            )
            for name, plugin in self.plugins.items():
                held = {t: sorted(plugin.current(t)) for t in TOPICS[self.provider]}
                values = {t: {str(s): value for s in ids} for t, ids in held.items() if ids}
                if values:
                    self._send(name, {"op": "commit", "group": "demo-group", "checkpoints": values})
        for conn in self._sockets.values():
            conn.close()


def records(p: Plugin) -> list[dict[str, Any]]:
    return [dict(r) for r in p.all_records()]


def live_cover(plugins: dict[str, Plugin], provider: str) -> bool:
    now = time.time()
    intervals = [i for name, p in plugins.items() for i in ownership.ownership_intervals(name, records(p))]
    owned = ownership.owners_at(intervals, now)
    return ownership.is_disjoint_balanced_cover(owned, list(plugins), all_shards(provider))
