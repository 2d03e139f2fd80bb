"""The emulator describes itself: endpoint, demo keys, resources, timeouts and a config that works."""

from __future__ import annotations

import json
import subprocess
import sys

from shardbeat.config import config_from_dict
from shardbeat.emulator.describe import banner, demo_config
from shardbeat.emulator.fixtures import load_fixtures


def test_the_banner_names_keys_resources_timeouts_and_a_config() -> None:
    text = banner(load_fixtures(None), "http://127.0.0.1:8099")
    assert "public demo keys" in text
    assert "access_key_id=emulator-akid access_key_secret=emulator-secret" in text
    assert "secret_id=emulator-secret-id secret_key=emulator-secret-key" in text
    assert "logstore demo-logstore: 4 shards; consumer groups: demo-group (timeout 6s" in text
    assert "topics demo-topic-a (2 partitions), demo-topic-b (2 partitions)" in text
    assert "rate limit 20 requests/s" in text
    assert '"endpoint": "http://127.0.0.1:8099"' in text
    assert "SHARDBEAT_CONSUMER=node-2 shardbeat run --config demo.json" in text


def test_the_printed_config_validates_for_each_node(tmp_path: object) -> None:
    doc = demo_config(load_fixtures(None), "http://127.0.0.1:8099")
    for node in ("node-1", "node-2"):
        config = config_from_dict(doc, environ={"SHARDBEAT_CONSUMER": node}, base_dir="/srv").config
        assert [g.consumer for g in config.groups] == [node, node]
        assert config.control.socket == f"/srv/{node}.sock"


def test_print_config_writes_the_config_and_exits() -> None:
    run = [sys.executable, "-m", "shardbeat", "emulator"]
    out = subprocess.run(
        [*run, "--print-config", "--port", "9123"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert {g["endpoint"] for g in doc["groups"]} == {"http://127.0.0.1:9123"}
    no_port = subprocess.run(
        [*run, "--print-config", "--port", "0"], capture_output=True, text=True, timeout=30
    )
    assert no_port.returncode == 2 and "--port" in no_port.stderr
