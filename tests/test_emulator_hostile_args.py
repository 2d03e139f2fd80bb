"""Hostile emulator arguments: a FIFO for --fixtures or an impossible --port: a usage error, never a hang."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shardbeat.emulator.server import main


@pytest.mark.parametrize("print_config", [True, False], ids=["print-config", "serve"])
def test_a_fifo_for_fixtures_is_refused_at_once(tmp_path: Path, print_config: bool) -> None:
    fifo = tmp_path / "fixtures.json"
    os.mkfifo(fifo)
    argv = [sys.executable, "-m", "shardbeat", "emulator", "--port", "18099", "--fixtures", str(fifo)]
    done = subprocess.run(
        argv + (["--print-config"] if print_config else []),
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "FIFO" in done.stderr and done.stdout == ""


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_an_impossible_port_is_a_usage_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--print-config", "--port", port])
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--port" in captured.err


@pytest.mark.parametrize("host", ["", "  ", "a b", "127.0.0.1\n"])
def test_an_empty_or_spaced_host_is_a_usage_error(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    # "" would bind every interface (an unset $VAR in --host "$VAR" exposing the emulator), and
    # --print-config would write an endpoint no config accepts.
    with pytest.raises(SystemExit) as stopped:
        main(["--print-config", "--host", host])
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--host" in captured.err
