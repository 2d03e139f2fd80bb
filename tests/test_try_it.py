"""The README's "Try it in one minute" really works: its commands, run as written (the emulator on a
free port instead of 8099, `.venv/bin/shardbeat` as this interpreter's `-m shardbeat`)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import shardbeat_in_process, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def try_it_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- try-it -->\n```sh\n(.*?)```\n<!-- /try-it -->", readme, re.S)
    assert block, "README lost its try-it block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse(command: str, port: int) -> tuple[dict[str, str], list[str], str | None]:
    """-> (environment assignments, argv, file stdout goes to)."""
    words = shlex.split(command.replace("--port 8099", f"--port {port}"))
    env: dict[str, str] = {}
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    target = None
    if ">" in words:
        at = words.index(">")
        target, words = words[at + 1], words[:at]
    assert words[0] == ".venv/bin/shardbeat", command
    return env, [sys.executable, "-m", "shardbeat", *words[1:]], target


def held(cwd: Path, consumer: str) -> dict[str, int]:
    # The test's own look (the README's `status` command runs as a real process below): in this process,
    # as polling with a `shardbeat status` child every half second cost seconds of start-ups.
    out = shardbeat_in_process(
        "status", "--config", "demo.json", "--json", env={"SHARDBEAT_CONSUMER": consumer}, cwd=cwd
    )
    if out.returncode != 0:
        return {}
    groups: list[dict[str, Any]] = json.loads(out.stdout)["groups"]
    return {g["provider"]: sum(len(ids) for ids in g["assigned"].values()) for g in groups}


def test_the_readme_try_it_section_works(tmp_path: Path) -> None:
    commands = try_it_commands()
    assert commands[0] == "make emulator"
    assert "shardbeat emulator --port 8099" in (ROOT / "Makefile").read_text()
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        emulator = subprocess.Popen(
            [sys.executable, "-m", "shardbeat", "emulator", "--port", str(port)],
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        procs.append(emulator)
        assert emulator.stderr is not None
        assert "listening on" in emulator.stderr.readline().decode()
        runs: dict[str, subprocess.Popen[bytes]] = {}
        for command in commands[1:]:
            env, argv, target = parse(command, port)
            full_env = {**os.environ, **env}
            if argv[3] == "run":  # a node: runs until stopped
                proc = subprocess.Popen(
                    argv, cwd=tmp_path, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
                )
                procs.append(proc)
                runs[env["SHARDBEAT_CONSUMER"]] = proc
                consumer = env["SHARDBEAT_CONSUMER"]
                if len(runs) == 1:
                    assert wait_for(
                        lambda c=consumer: held(tmp_path, c) == {"sls": 4, "cls": 4}, 15, step=0.2
                    )
                else:  # the second node: the shards are shared
                    assert wait_for(lambda: held(tmp_path, "node-1") == {"sls": 2, "cls": 2}, 20, step=0.2)
                    assert wait_for(
                        lambda c=consumer: held(tmp_path, c) == {"sls": 2, "cls": 2}, 10, step=0.2
                    )
                continue
            out = subprocess.run(argv, cwd=tmp_path, env=full_env, capture_output=True, timeout=30)
            assert out.returncode == 0, (command, out.stderr.decode())
            if target is not None:
                (tmp_path / target).write_bytes(out.stdout)
            elif argv[3] == "status":
                rows = out.stdout.decode().splitlines()[1:]
                assert sorted(r.split()[0] for r in rows) == ["cls", "sls"]
                assert all(r.split()[3] == "2" for r in rows), rows  # HELD: half of 4
            elif argv[3] == "stop":
                stopped = runs[env["SHARDBEAT_CONSUMER"]]
                assert stopped.wait(10) == 0
                assert stopped.stdout is not None
                last = [json.loads(x)["event"] for x in stopped.stdout.read().splitlines()][-4:]
                assert sorted(last) == ["lost", "lost", "stopped", "stopped"]
        # node 2 is gone: after the group timeout (6 s) node 1 holds everything again
        assert wait_for(lambda: held(tmp_path, "node-1") == {"sls": 4, "cls": 4}, 15, step=0.2)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


@pytest.mark.parametrize(("target", "extras"), [("run", False), ("emulator", False), ("test", True)])
def test_make_run_installs_only_what_running_needs(target: str, extras: bool) -> None:
    """From a fresh clone (no venv yet), `make run` installs shardbeat alone; `make test` the extras."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    plan = subprocess.run(
        ["make", "-n", target, "VENV=/nonexistent/venv"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert plan.returncode == 0, plan.stderr
    installs = [
        line for line in plan.stdout.splitlines() if "pip install" in line and "--upgrade pip" not in line
    ]
    assert len(installs) == 1, installs
    assert ("[dev,sdk]" in installs[0]) is extras, installs
    # An editable install has no bytecode: set-up compiles it once (else every start compiles the
    # package from source where PYTHONDONTWRITEBYTECODE is set), and says nothing on stdout.
    compiles = [line for line in plan.stdout.splitlines() if "-m compileall" in line]
    assert len(compiles) == 1 and compiles[0].endswith(">&2"), compiles
