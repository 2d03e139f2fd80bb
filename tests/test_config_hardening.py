"""Config input that used to crash, hang or pass: huge numbers, special files, credentials with
control characters, absurd intervals. Each is refused with exit 2 naming the field (never the value)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import shardbeat_in_process
from shardbeat.config import ConfigError, config_from_dict, load_config

HUGE = int("9" * 400)
SECRET = "sls-Secret-VALUE-123"
NUMERIC = ("heartbeat_interval", "timeout", "lease_margin", "release_grace")


def sls_group(**changes: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "provider": "sls",
        "endpoint": "http://127.0.0.1:9",
        "project": "my-project",
        "logstore": "my-logstore",
        "consumer_group": "g1",
        "consumer": "c1",
        "credentials": {"access_key_id": "AKID", "access_key_secret": SECRET},
    }
    group.update(changes)
    return group


def problems_of(raw: Any, environ: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, environ=environ or {}, hostname="host")
    return {p.path: p.message for p in caught.value.problems}


@pytest.mark.parametrize("field", NUMERIC)
@pytest.mark.parametrize("value", [HUGE, -HUGE, float("inf")], ids=["huge", "-huge", "inf"])
def test_every_numeric_field_refuses_numbers_past_float(field: str, value: float) -> None:
    found = problems_of({"groups": [sls_group(**{field: value})]})
    assert f"groups[0].{field}" in found
    assert "9999999999" not in json.dumps(found)  # named, not echoed


def test_heartbeat_interval_has_a_floor() -> None:
    found = problems_of({"groups": [sls_group(heartbeat_interval=0.001)]})
    assert found["groups[0].heartbeat_interval"] == "must be at least 0.1"
    config_from_dict({"groups": [sls_group(heartbeat_interval=0.1, timeout=3)]}, environ={})


def test_a_tiny_lease_margin_is_warned_about() -> None:
    loaded = config_from_dict({"groups": [sls_group(lease_margin=0.01)]}, environ={})
    assert any(w.path == "groups[0].lease_margin" for w in loaded.warnings)


def test_toml_huge_integer(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[[groups]]\nprovider = 'sls'\nendpoint = 'http://127.0.0.1:9'\nproject = 'my-project'\n"
        f"logstore = 'my-logstore'\nconsumer_group = 'g1'\ntimeout = {HUGE}\n"
        f"credentials = {{ access_key_id = 'AKID', access_key_secret = '{SECRET}' }}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert [p.path for p in caught.value.problems] == ["groups[0].timeout"]


def shardbeat(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shardbeat", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,  # a FIFO used to hang here forever
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_validate_a_huge_number_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"groups": [sls_group()]}).replace('"consumer": "c1"', f'"timeout": {HUGE}'))
    out = shardbeat("validate", "--config", str(path))
    assert out.returncode == 2, out.stderr
    assert "groups[0].timeout" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("target", ["config", "credentials_file"])
def test_special_files_are_refused_at_once(tmp_path: Path, target: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    if target == "config":
        config = fifo
    else:
        config = tmp_path / "c.json"
        group = sls_group(credentials_file="fifo")
        del group["credentials"]
        config.write_text(json.dumps({"groups": [group]}))
    out = shardbeat("validate", "--config", str(config))
    assert out.returncode == 2
    assert "must be a regular file, not a FIFO" in out.stderr
    directory = shardbeat("validate", "--config", str(tmp_path))
    assert directory.returncode == 2 and "not a directory" in directory.stderr


CONTROL_VALUES = ["tok-12345\n", "tok-12345\r\n", "tok-\x0012345", " tok-12345", "tök-12345"]


@pytest.mark.parametrize("value", CONTROL_VALUES, ids=range(len(CONTROL_VALUES)))
def test_credentials_with_control_characters_are_refused_everywhere(value: str, tmp_path: Path) -> None:
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "AKID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}
    if "\x00" not in value:  # an environment cannot hold NUL
        found = problems_of(
            {"groups": [{k: v for k, v in sls_group().items() if k != "credentials"}]},
            environ={**env, "ALIBABA_CLOUD_SECURITY_TOKEN": value},
        )
        assert "ALIBABA_CLOUD_SECURITY_TOKEN" in found["groups[0].credentials.security_token"]
    inline = problems_of(
        {"groups": [sls_group(credentials={"access_key_id": "AKID", "access_key_secret": value})]}
    )
    assert "groups[0].credentials.access_key_secret" in inline
    # the file, through validate and doctor: exit 2, the key named, the value nowhere
    creds = tmp_path / "creds.json"
    creds.write_text(
        json.dumps({"access_key_id": "AKID", "access_key_secret": SECRET, "security_token": value})
    )
    creds.chmod(0o600)
    group = {k: v for k, v in sls_group(credentials_file=str(creds)).items() if k != "credentials"}
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"groups": [group]}))
    # One value in real processes, the others in this one (the same cli.main; a child each cost a start-up).
    run = shardbeat if value == CONTROL_VALUES[0] else shardbeat_in_process
    for verb in ("validate", "doctor"):
        out = run(verb, "--config", str(config))
        assert out.returncode == 2, (verb, out.stderr)
        assert "security_token" in out.stderr
        assert "tok-" not in out.stderr + out.stdout and "12345" not in out.stderr + out.stdout


@pytest.mark.parametrize("value", ["inf", "nan", "0", "1e9"])
def test_doctor_call_timeout_must_be_a_real_deadline(value: str, tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"groups": [sls_group()]}))
    run = shardbeat if value == "inf" else shardbeat_in_process  # one in a real process
    out = run("doctor", "--config", str(config), f"--call-timeout={value}")
    assert out.returncode == 2 and "--call-timeout" in out.stderr
