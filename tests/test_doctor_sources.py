"""`shardbeat doctor` with a credential source: which source answered, until when, and its failures."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from harness import bytecode_env, shardbeat_in_process
from shardbeat.config import config_from_dict
from shardbeat.emulator.server import EmulatorServer
from shardbeat.runtime.doctor import run_doctor


def checks(text: str) -> dict[str, tuple[str, str]]:
    found = {}
    for line in text.splitlines()[:-1]:
        status, _, rest = line.split("  ", 2)
        name, detail = rest.split(": ", 1)
        found[name] = (status, detail)
    return found


def run(
    emulator: EmulatorServer, provider: str, credentials: dict[str, Any], tmp_path: Path
) -> tuple[int, str]:
    group = emulator.demo_config(provider)
    group["credentials"] = credentials
    loaded = config_from_dict({"groups": [group], "runtime_dir": str(tmp_path / "run")}, environ={})
    out = io.StringIO()
    code = run_doctor(loaded, out, heartbeat=False, call_timeout=2.0)
    text = out.getvalue()
    for key in emulator.world.identity.keys.values():
        assert key.secret not in text and key.token not in text
    return code, text


@pytest.mark.parametrize(
    ("provider", "credentials", "answered"),
    [
        (
            "sls",
            {"source": "ecs_ram_role"},
            r"ecs_ram_role: IMDSv2 http://127\.0\.0\.1:\d+ role shardbeat-ecs-role",
        ),
        ("cls", {"source": "cvm_role"}, r"cvm_role: http://127\.0\.0\.1:\d+ role shardbeat-cvm-role"),
    ],
)
def test_doctor_names_the_source_and_its_expiry(
    emulator: EmulatorServer, tmp_path: Path, provider: str, credentials: dict[str, Any], answered: str
) -> None:
    requests.post(emulator.url + "/_admin/identity", json={"lifetime": 3600}, timeout=5).raise_for_status()
    code, text = run(emulator, provider, {**credentials, "metadata_endpoint": emulator.url}, tmp_path)
    found = checks(text)
    assert found["source"][0] == "PASS", text
    assert re.search(answered, found["source"][1]), found["source"]
    assert re.search(r"expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(in 60 min", found["source"][1])
    assert found["credentials"][0] == "PASS"  # the fetched key signed the read-only call
    assert code == 0


def test_doctor_fails_the_source_and_skips_what_needs_a_key(emulator: EmulatorServer, tmp_path: Path) -> None:
    creds = {"source": "cvm_role", "role_name": "missing-role", "metadata_endpoint": emulator.url}
    code, text = run(emulator, "cls", creds, tmp_path)
    found = checks(text)
    assert found["source"][0] == "FAIL"
    assert "role missing-role: HTTP 404" in found["source"][1] and "bind a CAM role" in found["source"][1]
    assert found["credentials"] == ("WARN", "not checked: the credential source gave no key")
    assert code == 1


def test_bad_source_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    group = {
        "provider": "sls",
        "endpoint": "http://127.0.0.1:9",
        "project": "demo-project",
        "logstore": "demo-logstore",
        "consumer_group": "demo-group",
        "credentials": {"source": "cvm_role"},
    }
    other = {**group, "consumer": "other", "credentials": {"source": "oidc_role", "role_name": "r"}}
    config.write_text(json.dumps({"groups": [group, other]}))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **bytecode_env()}
    for verb in ("validate", "run", "doctor"):
        if verb == "run":  # what a host starts: a real process; the others through cli.main here
            done = subprocess.run(
                [sys.executable, "-m", "shardbeat", verb, "--config", str(config)],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
            )
        else:
            done = shardbeat_in_process(verb, "--config", str(config), env=env, clean_env=True)
        assert done.returncode == 2, (verb, done.stderr)
        assert done.stdout == ""
        assert "groups[0].credentials.source" in done.stderr and "ecs_ram_role" in done.stderr
        assert "groups[1].credentials.role_name: applies to source ecs_ram_role only" in done.stderr
        assert (
            "groups[1].credentials.role_arn: missing" in done.stderr
            and "ALIBABA_CLOUD_ROLE_ARN" in done.stderr
        )


def test_the_source_can_be_given_as_a_flag(tmp_path: Path) -> None:
    base = [
        sys.executable,
        "-m",
        "shardbeat",
        "run",
        "--provider",
        "cls",
        "--region",
        "ap-guangzhou",
        "--logset-id",
        "6f6ded3f-948c-4616-9c7c-956a95d8c1a3",
        "--topic",
        "t1",
        "--group",
        "g1",
    ]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **bytecode_env()}
    done = subprocess.run(
        [*base, "--credentials-source", "ecs_ram_role"], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "--credentials-source: must be one of: static, cvm_role, oidc_role, profile" in done.stderr
    done = shardbeat_in_process(*base[3:], "--credentials-source", "oidc_role", env=env, clean_env=True)
    assert done.returncode == 2 and "TKE_PROVIDER_ID" in done.stderr
