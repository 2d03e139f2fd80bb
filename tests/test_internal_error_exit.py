"""A bug that escapes the runner ends `shardbeat run` with exit 1 AND says so on stderr: the log line of
the internal error is written after `run` handed stderr to its background writer (a daemon thread), and
once went down with the process unwritten, leaving an operator an exit code and no word."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LAUNCH = """
import sys
from shardbeat.runtime import runner

def broken(self):
    raise RuntimeError("injected bug in the loop")

runner.Runner.run = broken
from shardbeat.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_internal_error_in_run_is_logged_before_the_exit(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "groups": [
                    {
                        "provider": "sls",
                        "endpoint": "http://127.0.0.1:9",
                        "project": "demo-project",
                        "logstore": "demo-logstore",
                        "consumer_group": "demo-group",
                        "consumer": "c",
                        "credentials": {"access_key_id": "id", "access_key_secret": "s"},
                    }
                ],
                "runtime_dir": str(tmp_path / "rt"),
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert "internal error (please report it): injected bug in the loop" in done.stderr, done.stderr
