"""The sample configs validate on a fresh machine: with exactly the environment variables their README
lists (nothing else from this machine), and structure-only with none at all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import bytecode_env, shardbeat_in_process

CONFIGS = Path(__file__).resolve().parent.parent / "examples" / "configs"


def documented_env() -> dict[str, list[str]]:
    """file name -> the variables examples/configs/README.md says it needs."""
    found: dict[str, list[str]] = {}
    for line in (CONFIGS / "README.md").read_text().splitlines():
        match = re.match(r"- (.*?): (.*)$", line)
        if not match:
            continue
        names = re.findall(r"`([\w.-]+)`", match.group(1))
        variables = [v for v in re.findall(r"`([A-Z][A-Z0-9_]+)`", match.group(2))]
        for name in names:
            found[name] = variables
    return found


def validate(path: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    # A fresh machine: none of this machine's environment but what Python needs to start.
    clean = {"PATH": os.environ.get("PATH", "/usr/bin"), "HOME": str(path.parent), **bytecode_env(), **env}
    return subprocess.run(
        [sys.executable, "-m", "shardbeat", "validate", *flags, "--config", str(path)],
        capture_output=True,
        text=True,
        env=clean,
        cwd="/",
        timeout=30,
    )


def validate_here(path: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    """`validate` above, run in this process with the same clean environment: for the checks that each
    documented variable is needed (a child per variable cost seconds of start-ups; every sample still
    validates in a real process)."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin"), "HOME": str(path.parent), **env}
    return shardbeat_in_process("validate", *flags, "--config", str(path), env=clean, clean_env=True, cwd="/")


SAMPLES = sorted(p.name for p in CONFIGS.iterdir() if p.suffix in (".json", ".toml"))


def test_every_sample_is_documented() -> None:
    assert SAMPLES and set(SAMPLES) == set(documented_env())


@pytest.mark.parametrize("name", SAMPLES)
def test_a_sample_validates_with_the_documented_environment(name: str) -> None:
    env = {var: f"placeholder-{var.lower()}" for var in documented_env()[name]}
    if "SHARDBEAT_CONSUMER" in env:
        env["SHARDBEAT_CONSUMER"] = "node-1"
    out = validate(CONFIGS / name, env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert validate_here(CONFIGS / name, env).stdout.strip() == "ok"  # so each exit 2 below is the variable's
    for var in env:  # each documented variable is really needed
        fewer = {k: v for k, v in env.items() if k != var}
        assert validate_here(CONFIGS / name, fewer).returncode == 2, f"{name} does not need {var}"


@pytest.mark.parametrize("name", SAMPLES)
def test_a_sample_validates_structure_only_without_any_environment(name: str) -> None:
    run = validate if name == SAMPLES[0] else validate_here  # one in a real process, the others here
    out = run(CONFIGS / name, {}, "--no-credentials")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok (structure only: credentials not checked)"


def test_no_credentials_still_finds_structural_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"groups": [{"provider": "sls", "project": "p", "heartbeat_interval": -1}]}')
    out = validate(bad, {}, "--no-credentials")
    assert out.returncode == 2
    assert "heartbeat_interval" in out.stderr and "endpoint" in out.stderr
    assert "credentials" not in out.stderr
