"""Hostile config values found by fuzzing: each is a ConfigError naming its path, never a crash."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import bytecode_env
from shardbeat.config import ConfigError, config_from_dict
from shardbeat.config.files import read_text

SLS: dict[str, Any] = {
    "provider": "sls",
    "endpoint": "cn-hangzhou.log.aliyuncs.com",
    "project": "my-project",
    "logstore": "my-logstore",
    "consumer_group": "my-group",
    "consumer": "node-1",
    "credentials": {"access_key_id": "akid", "access_key_secret": "do-not-echo-0123456789"},
}
CLS: dict[str, Any] = {
    "provider": "cls",
    "region": "ap-guangzhou",
    "logset_id": "6f6ded3f-0000-4000-8000-000000000001",
    "topics": ["topic-id-a"],
    "consumer_group": "my_group",
    "consumer": "node-1",
    "credentials": {"secret_id": "sid", "secret_key": "do-not-echo-0123456789"},
}


def problems(tmp_path: Path, group: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"groups": [group]}, base_dir=tmp_path, environ={}, hostname="h")
    return {p.path: p.message for p in caught.value.problems}


@pytest.mark.parametrize("base", [SLS, CLS], ids=["sls", "cls"])
@pytest.mark.parametrize("start", [10**400, -(10**400), 253402300800, -1])
def test_a_checkpoint_start_out_of_range_is_named_not_a_crash(
    tmp_path: Path, base: dict[str, Any], start: int
) -> None:
    group = copy.deepcopy(base)
    group["checkpoints"] = {"start": start}
    assert "groups[0].checkpoints.start" in problems(tmp_path, group)


@pytest.mark.parametrize("base", [SLS, CLS], ids=["sls", "cls"])
def test_a_profile_file_name_with_a_nul_is_named_not_a_crash(tmp_path: Path, base: dict[str, Any]) -> None:
    group = copy.deepcopy(base)
    group["credentials"] = {"source": "profile", "profile_file": "creds\x00x"}
    assert "groups[0].credentials.profile_file" in problems(tmp_path, group)


def test_reading_a_file_whose_name_holds_a_nul_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        read_text("creds\x00x", "credentials file")
    assert "NUL" in caught.value.problems[0].message


def test_validate_prints_no_terminal_escape_and_no_secret_in_a_problem(tmp_path: Path) -> None:
    secret = "SECRETVALUE-0123456789"
    group = {**copy.deepcopy(SLS), "\x1b[31mEVIL" + "k" * 5000: 1}
    group["credentials"] = {"access_key_id": "akid", "access_key_secret": "${SB_TEST_SECRET}"}
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"groups": [group], "tls": {"ca_file": "${SB_TEST_SECRET}"}}))
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SB_TEST_SECRET": secret, **bytecode_env()}
    done = subprocess.run(
        [sys.executable, "-m", "shardbeat", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "tls.ca_file" in done.stderr and "\\x1b[31mEVIL" in done.stderr
    assert "\x1b" not in done.stderr
    assert secret not in done.stderr
    assert max(len(line) for line in done.stderr.splitlines()) <= 1010


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.1:-1", ":9464", "::1:9464", "127.0.0.1"])
def test_a_metrics_listen_that_run_would_refuse_fails_validation(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"groups": [SLS], "metrics": {"listen": listen}}, base_dir=tmp_path, environ={})
    assert [p.path for p in caught.value.problems] == ["metrics.listen"]


def test_a_control_socket_path_too_long_for_a_unix_socket_fails_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"groups": [SLS], "control": {"socket": "s" * 120}}, base_dir=tmp_path, environ={})
    assert [p.path for p in caught.value.problems] == ["control.socket"]


def test_usable_local_endpoints_still_load(tmp_path: Path) -> None:
    loaded = config_from_dict(
        {"groups": [SLS], "metrics": {"listen": "[::1]:9464"}, "control": {"socket": "c.sock"}},
        base_dir=tmp_path,
        environ={},
    )
    assert loaded.config.metrics is not None and loaded.config.control.socket == str(tmp_path / "c.sock")


@pytest.mark.parametrize("value", ["qcs::cam::uin/1:roleName/x\n", " x", "x\x1b[31m"])
def test_a_source_setting_from_the_environment_gets_the_files_rules(tmp_path: Path, value: str) -> None:
    group = {**copy.deepcopy(CLS), "credentials": {"source": "oidc_role"}}
    token = tmp_path / "token"
    token.write_text("t")
    environ = {"TKE_ROLE_ARN": value, "TKE_PROVIDER_ID": "p", "TKE_IDENTITY_TOKEN_FILE": str(token)}
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"groups": [group]}, base_dir=tmp_path, environ=environ)
    found = [(p.path, p.message) for p in caught.value.problems]
    assert [path for path, _ in found] == ["groups[0].credentials.role_arn"]
    assert "TKE_ROLE_ARN" in found[0][1] and value.strip() not in found[0][1]


LONE = "/tmp/x\ud800y"  # JSON's "\ud800": a str that no path, URL or header encodes (os.fsencode raised)


@pytest.mark.parametrize(
    ("top", "group", "path"),
    [
        ({"control": {"socket": LONE}}, {}, "control.socket"),
        ({"runtime_dir": LONE}, {}, "runtime_dir"),
        ({"tls": {"ca_file": LONE}}, {}, "tls.ca_file"),
        ({"metrics": {"listen": "\ud800:9464"}}, {}, "metrics.listen"),
        ({"proxy": "http://\ud800:3128"}, {}, "proxy"),
        ({}, {"credentials": None, "credentials_file": LONE}, "groups[0].credentials_file"),
        (
            {},
            {"credentials": {"source": "profile", "profile_file": LONE}},
            "groups[0].credentials.profile_file",
        ),
        ({}, {"endpoint": "\ud800.example.com"}, "groups[0].endpoint"),
    ],
)
def test_a_lone_surrogate_is_one_clear_problem_wherever_it_is(
    tmp_path: Path, top: dict[str, Any], group: dict[str, Any], path: str
) -> None:
    entry = {**copy.deepcopy(SLS), **group}
    entry = {k: v for k, v in entry.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"groups": [entry], **top}, base_dir=tmp_path, environ={}, hostname="h")
    (problem,) = caught.value.problems
    assert problem.path == path and problem.message.startswith("must be Unicode text: holds a lone surrogate")


def test_undecodable_bytes_from_the_environment_still_make_a_path(tmp_path: Path) -> None:
    """os.environ keeps a byte it cannot decode as a surrogate (\\udcff): that one encodes back."""
    loaded = config_from_dict(
        {"groups": [SLS], "runtime_dir": "${DIR}"}, base_dir=tmp_path, environ={"DIR": "/tmp/a\udcffb"}
    )
    assert loaded.config.runtime_dir == "/tmp/a\udcffb"
