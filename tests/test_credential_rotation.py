"""Temporary keys in a running Runner against the emulator: rotation before expiry with no failed
heartbeat, the old key refused after it expires, a hung metadata server that delays nothing, a
rotating OIDC token file, and refresh failures reported as `error` records without secrets."""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from harness import wait_for
from shardbeat.config import config_from_dict
from shardbeat.core.credential_refresh import RefreshPolicy
from shardbeat.emulator.server import EmulatorServer
from shardbeat.providers.base import Credentials, ProviderError
from shardbeat.providers.services import make_provider
from shardbeat.runtime.cloud_credentials import DefaultSessions
from shardbeat.runtime.output import RecordWriter
from shardbeat.runtime.runner import Runner
from shardbeat.runtime.transport import HttpTransport

ROOT = Path(__file__).parent.parent
SCHEMA = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "record.schema.json").read_text()))
Record = dict[str, Any]
# Keys that live seconds instead of hours: refresh 1.5 s before the end, never hand out one with
# under 0.5 s left, retry failures from 0.2 s.
POLICY = RefreshPolicy(before=1.5, safety=0.5, retry_first=0.2, retry_max=1.0, min_spacing=0.2)
# For the tests that say no heartbeat fails while keys rotate: ROTATING_LIFETIME-s keys rotating as
# often as 3 s keys under POLICY (about every second), but with room for a loaded machine: the fetch
# has 2.5 s before the key in hand runs out, and a key is handed out with at least 2 s left (a signed
# heartbeat that reached the server 0.5 s later was refused as expired under CI load).
ROTATING_LIFETIME = 6
ROTATING = RefreshPolicy(before=4.5, safety=2.0, retry_first=0.2, retry_max=1.0, min_spacing=0.2)


def fixtures(timeout: int = 3) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ROOT / "plugin/shardbeat/emulator/default_fixtures.json").read_text())
    doc["sls"]["projects"]["demo-project"]["logstores"]["demo-logstore"]["consumer_groups"]["demo-group"][
        "timeout"
    ] = timeout
    doc["cls"]["logsets"]["demo-logset"]["consumer_groups"]["demo-group"]["timeout"] = timeout
    return doc


pytestmark = pytest.mark.emulator_fixtures(fixtures())


def sls_group(emu: EmulatorServer, credentials: dict[str, Any]) -> dict[str, Any]:
    return {
        "provider": "sls",
        "endpoint": emu.url,
        "project": "demo-project",
        "logstore": "demo-logstore",
        "consumer_group": "demo-group",
        "consumer": "node-a",
        "heartbeat_interval": 0.3,
        "timeout": 3,
        "credentials": credentials,
    }


def cls_group(emu: EmulatorServer, credentials: dict[str, Any]) -> dict[str, Any]:
    return {
        "provider": "cls",
        "endpoint": emu.url,
        "region": "ap-guangzhou",
        "logset_id": "demo-logset",
        "topics": ["demo-topic-a", "demo-topic-b"],
        "consumer_group": "demo-group",
        "consumer": "node-a",
        "heartbeat_interval": 0.3,
        "timeout": 3,
        "credentials": credentials,
    }


def identity(emu: EmulatorServer, **settings: Any) -> dict[str, Any]:
    if settings:
        requests.post(emu.url + "/_admin/identity", json=settings, timeout=5).raise_for_status()
    answer: dict[str, Any] = requests.get(emu.url + "/_admin/identity", timeout=5).json()
    return answer


class Running:
    """A Runner on a thread with the short-key policy, its records read back from a pipe."""

    def __init__(
        self,
        groups: list[dict[str, Any]],
        environ: dict[str, str] | None = None,
        policy: RefreshPolicy = POLICY,
        metadata_timeout: tuple[float, float] = (2.0, 5.0),  # the product's: a loaded machine is slow
    ) -> None:
        config = config_from_dict({"groups": groups}, environ=environ or {}).config
        self._r, self._w = os.pipe()
        self.runner = Runner(
            config.groups,
            RecordWriter(self._w),
            credential_sessions=lambda: DefaultSessions(metadata_timeout=metadata_timeout),
            credential_policy=policy,
        )
        self.records: list[Record] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self._thread = threading.Thread(target=self.runner.run, daemon=True)
        self._thread.start()

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
                assert left > 0, f"no such record; got {[(r['event'], r.get('error')) for r in self.records]}"
                self._cond.wait(left)

    def errors(self, source: str | None = None) -> list[Record]:
        with self._cond:
            return [r for r in self.records if r["event"] == "error" and source in (None, r["source"])]

    def stop(self) -> None:
        self.runner.stop()
        self._thread.join(5)
        os.close(self._w)


def heartbeats(emu: EmulatorServer, since: int = 0) -> list[dict[str, Any]]:
    receipts: list[dict[str, Any]] = requests.get(emu.url + f"/_admin/log?since={since}", timeout=5).json()[
        "receipts"
    ]
    return [r for r in receipts if r["consumer"] == "node-a"]


def refused_after_expiry(emu: EmulatorServer, group: dict[str, Any], key_id: str) -> ProviderError:
    """Sign a heartbeat with an issued key by hand and return the server's refusal."""
    key = emu.world.identity.keys[key_id]
    config = config_from_dict({"groups": [group]}, environ={}).config.groups[0]
    provider = make_provider(config)
    request = provider.heartbeat_request({}, time.time(), Credentials(key.key_id, key.secret, key.token))
    transport = HttpTransport(time.monotonic)
    try:
        response = transport.send(provider.endpoint, request, time.monotonic() + 5)
        with pytest.raises(ProviderError) as caught:
            provider.parse_heartbeat(response)
    finally:
        transport.close()
    return caught.value


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_keys_rotate_before_expiry_and_no_heartbeat_fails(emulator: EmulatorServer, provider: str) -> None:
    identity(emulator, lifetime=ROTATING_LIFETIME)  # refreshed 4.5 s before its end
    if provider == "sls":
        group = sls_group(emulator, {"source": "ecs_ram_role", "metadata_endpoint": emulator.url})
    else:
        group = cls_group(emulator, {"source": "cvm_role", "metadata_endpoint": emulator.url})
    group["heartbeat_interval"] = 0.6  # a call budget (0.9 x interval) a loaded machine does not stall past
    running = Running([group], policy=ROTATING)
    try:
        running.wait_for(lambda r: r["event"] == "assignment")
        first_key = identity(emulator)["keys"][0]["key_id"]
        # five keys: four rotations; and at least 15 beats (fewer fit in that time on a loaded machine)
        wait_for(
            lambda: len(identity(emulator)["keys"]) >= 5 and len(heartbeats(emulator)) >= 15, 30, step=0.1
        )
        # the first key long expired (the refusal below)
        wait_for(lambda: identity(emulator)["keys"][0]["expires_in"] < 0, 30, step=0.1)
    finally:
        running.stop()
    state = identity(emulator)
    assert len(state["keys"]) >= 5, state["fetches"]
    beats = heartbeats(emulator)
    assert len(beats) >= 15
    assert [b for b in beats if b["error"] is not None or b["status"] != 200] == []
    assert running.errors() == [], [(r["source"], r["error"]) for r in running.errors()]
    assert [r for r in running.records if r["event"] == "lost"] == [
        r for r in running.records if r["event"] == "lost" and r["reason"] == "stopped"
    ]
    # The first key is dead now, and the emulator says so.
    refusal = refused_after_expiry(emulator, group, first_key)
    expected = "SecurityTokenExpired" if provider == "sls" else "AuthFailure.TokenFailure"
    assert refusal.code == expected and refusal.credentials_rejected


def test_a_hung_metadata_server_delays_no_heartbeat(emulator: EmulatorServer) -> None:
    identity(emulator, lifetime=8)  # refresh due 2 s in; the key is handed out until 7.5 s
    group = sls_group(
        emulator,
        {"source": "ecs_ram_role", "role_name": "shardbeat-ecs-role", "metadata_endpoint": emulator.url},
    )
    # Beats every 0.6 s, and a gap over 2.5 intervals (1.5 s) fails: a scheduler held up by even one
    # hung metadata request (2 s read timeout) would show, while a loaded test machine's stalls of a
    # few hundred ms do not (0.3 s beats and a 0.75 s bound did fail on them).
    interval = group["heartbeat_interval"] = 0.6
    running = Running(
        [group],
        policy=RefreshPolicy(before=6, safety=0.5, retry_first=0.2, retry_max=1.0),
        metadata_timeout=(0.5, 2.0),
    )
    try:
        running.wait_for(lambda r: r["event"] == "assignment")
        started = time.monotonic()
        # From now on every metadata request hangs (the refresher's read timeout is 2 s; the fetch
        # makes two hung requests: the IMDSv2 token, then the role without it).
        rule = {"service": "metadata", "effect": "hang", "seconds": 30}
        requests.post(emulator.url + "/_admin/faults", json=rule, timeout=5).raise_for_status()
        seq = requests.get(emulator.url + "/_admin/log?since=0", timeout=5).json()["next"]
        error = running.wait_for(lambda r: r["event"] == "error" and r["source"] == "credentials", timeout=8)
        while time.monotonic() - started < 6.0:  # stay inside the key's life
            time.sleep(0.1)
        beats = heartbeats(emulator, seq)
    finally:
        requests.delete(emulator.url + "/_admin/faults", timeout=5)
        running.stop()
    assert error["error"]["code"] == "CredentialRefreshFailed"
    message = error["error"]["message"]
    assert "ecs_ram_role" in message and "keeping the current key" in message
    secrets = [k.secret for k in emulator.world.identity.keys.values()] + [
        k.token for k in emulator.world.identity.keys.values()
    ]
    assert not any(s in json.dumps(running.records) for s in secrets)
    assert all(b["status"] == 200 and b["error"] is None for b in beats)
    # Beats kept their cadence while the refresher sat in hung requests.
    times = [b["mono"] for b in beats]
    assert len(times) >= 8
    assert max(b - a for a, b in itertools.pairwise(times)) < interval * 2.5
    assert [r for r in running.records if r["event"] == "lost" and r["reason"] != "stopped"] == []


def test_an_expired_key_with_no_successor_fails_heartbeats_and_recovers(emulator: EmulatorServer) -> None:
    identity(emulator, lifetime=3)
    group = cls_group(emulator, {"source": "cvm_role", "metadata_endpoint": emulator.url})
    running = Running([group])
    try:
        running.wait_for(lambda r: r["event"] == "assignment")
        rule = {"service": "metadata", "effect": "status", "status": 500}
        requests.post(emulator.url + "/_admin/faults", json=rule, timeout=5).raise_for_status()
        unavailable = running.wait_for(
            lambda r: r["event"] == "error" and r["error"]["code"] == "CredentialsUnavailable", timeout=8
        )
        requests.delete(emulator.url + "/_admin/faults", timeout=5)
        count = len(running.records)
        running.wait_for(
            lambda r: r["event"] in ("assignment", "lease") and running.records.index(r) >= count
        )
    finally:
        running.stop()
    assert "cvm_role" in unavailable["error"]["message"] and "HTTP 500" in unavailable["error"]["message"]


def test_oidc_token_file_rotation_keeps_heartbeats_going(emulator: EmulatorServer, tmp_path: Path) -> None:
    identity(emulator, lifetime=ROTATING_LIFETIME)
    token_file = tmp_path / "token"
    token_file.write_text("projected-token-1")
    environ = {
        "ALIBABA_CLOUD_ROLE_ARN": "acs:ram::1:role/shardbeat",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "acs:ram::1:oidc-provider/ack",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
    }
    # Every heartbeat must succeed: a call budget (0.9 x interval) that a loaded test machine cannot
    # stall through (0.3 s gave 0.27 s and, now and then, a bootstrap Timeout).
    group = {
        **sls_group(emulator, {"source": "oidc_role", "sts_endpoint": emulator.url}),
        "heartbeat_interval": 0.6,
    }
    running = Running([group], environ, policy=ROTATING)
    try:
        running.wait_for(lambda r: r["event"] == "assignment")
        token_file.write_text("projected-token-2")
        identity(emulator, revoked_oidc_tokens=["projected-token-1"])
        fetched = identity(emulator)["fetches"]["AssumeRoleWithOIDC"]
        wait_for(lambda: identity(emulator)["fetches"]["AssumeRoleWithOIDC"] >= fetched + 2, 30, step=0.1)
    finally:
        running.stop()
    assert identity(emulator)["fetches"]["AssumeRoleWithOIDC"] >= fetched + 2
    assert running.errors() == [], [(r["source"], r["error"]) for r in running.errors()]
    assert all(b["status"] == 200 and b["error"] is None for b in heartbeats(emulator))


def test_a_profile_without_expiry_is_reread_when_the_server_rejects_its_key(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    profile = tmp_path / "credentials"
    profile.write_text("[default]\nsecret_id = emulator-secret-id\nsecret_key = wrong-key\n")
    group = cls_group(emulator, {"source": "profile", "profile_file": str(profile)})
    running = Running([group])
    try:
        running.wait_for(
            lambda r: r["event"] == "error" and r["error"]["code"] == "AuthFailure.SignatureFailure"
        )
        time.sleep(0.5)  # the refresher has nothing due (no expiry) and must still be alive
        profile.write_text("[default]\nsecret_id = emulator-secret-id\nsecret_key = emulator-secret-key\n")
        running.wait_for(lambda r: r["event"] == "assignment", timeout=15)
    finally:
        running.stop()
    assert "wrong-key" not in json.dumps(running.records)


def test_a_key_issued_already_expiring_is_a_failed_refresh(emulator: EmulatorServer) -> None:
    identity(emulator, lifetime=0.2)  # below the policy's 0.5 s safety: unusable as it arrives
    running = Running([sls_group(emulator, {"source": "ecs_ram_role", "metadata_endpoint": emulator.url})])
    try:
        error = running.wait_for(lambda r: r["event"] == "error" and r["source"] == "credentials")
    finally:
        running.stop()
    assert "answered with a key that expires in 0s" in error["error"]["message"]


def test_groups_on_one_source_share_its_refresher(emulator: EmulatorServer) -> None:
    identity(emulator, lifetime=600)
    creds = {"source": "ecs_ram_role", "metadata_endpoint": emulator.url}
    one = sls_group(emulator, creds)
    two = {**sls_group(emulator, creds), "consumer": "node-b"}
    running = Running([one, two])
    try:
        running.wait_for(lambda r: r["event"] == "assignment" and r["consumer"] == "node-a")
        running.wait_for(lambda r: r["event"] == "assignment" and r["consumer"] == "node-b")
    finally:
        running.stop()
    assert identity(emulator)["fetches"] == {"ecs_metadata/IMDSv2": 1}


def test_the_process_runs_on_an_instance_role(emulator: EmulatorServer, tmp_path: Path) -> None:
    from harness import Plugin, write_config

    group = sls_group(emulator, {"source": "ecs_ram_role", "metadata_endpoint": emulator.url})
    config = write_config(tmp_path / "c.json", [group], runtime_dir=str(tmp_path / "run"))
    env = {k: "" for k in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET")}
    plugin = Plugin(["run", "--config", str(config)], env=env)
    try:
        assert plugin.wait_for(lambda recs: any(r["event"] == "assignment" for r in recs), 15), plugin.log()
        assert plugin.terminate() == 0
    finally:
        plugin.kill()
        plugin.finish()
    log = plugin.log()
    assert re.search(
        r"credentials ecs_ram_role \(role <discovered> at http://127\.0\.0\.1:\d+\): key from IMDSv2", log
    )
    assert [r["event"] for r in plugin.all_records()][-2:] == ["lost", "stopped"]
    for key in emulator.world.identity.keys.values():
        assert key.secret not in log and key.token not in log
