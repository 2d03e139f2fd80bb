"""A big config under a low open-file limit: `run` makes room (one lock per group), or says what to set."""

from __future__ import annotations

import copy
import json
import resource
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from fault_kit import fast_fixtures
from harness import write_config
from shardbeat.emulator.fixtures import parse_fixtures
from shardbeat.emulator.server import EmulatorServer
from shardbeat.runtime import open_files

NOFILE = resource.RLIMIT_NOFILE


class Limits:
    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.soft, self.hard, self.refuse = soft, hard, refuse
        self.set: list[tuple[int, int]] = []

    def get(self, which: int) -> tuple[int, int]:
        assert which == NOFILE
        return self.soft, self.hard

    def put(self, which: int, limits: tuple[int, int]) -> None:
        assert which == NOFILE
        if self.refuse:
            raise ValueError("not allowed")
        self.set.append(limits)
        self.soft = limits[0]


def test_soft_limit_raised_to_what_the_groups_need_not_to_the_hard_limit() -> None:
    limits = Limits(1024, 1 << 20)
    assert open_files.make_room(3000, limits.get, limits.put) is None
    assert limits.set == [(open_files.needed_for(3000), 1 << 20)]


def test_enough_already_changes_nothing() -> None:
    for soft in (open_files.needed_for(10), resource.RLIM_INFINITY):
        limits = Limits(soft, resource.RLIM_INFINITY)
        assert open_files.make_room(10, limits.get, limits.put) is None
        assert limits.set == []


def test_unlimited_hard_limit_is_enough() -> None:
    limits = Limits(256, resource.RLIM_INFINITY)
    assert open_files.make_room(3000, limits.get, limits.put) is None
    assert limits.set == [(open_files.needed_for(3000), resource.RLIM_INFINITY)]


def test_hard_limit_that_fits_the_locks_but_not_every_connection_runs() -> None:
    limits = Limits(1024, 4096)
    assert open_files.make_room(3000, limits.get, limits.put) is None
    assert limits.set == [(4096, 4096)]


@pytest.mark.parametrize("refuse", [False, True])
def test_hard_limit_below_the_locks_is_refused_with_the_number_to_set(refuse: bool) -> None:
    limits = Limits(1024, 1024, refuse=refuse)
    problem = open_files.make_room(3000, limits.get, limits.put)
    assert problem is not None
    needed = open_files.needed_for(3000)
    assert "3000 group(s)" in problem and f"LimitNOFILE={needed}" in problem and "at most 1024" in problem


# -- end to end -------------------------------------------------------------------------------------

GROUPS = 300
LOW = 256  # a soft limit below one lock per group


def many_groups_fixtures() -> dict[str, Any]:
    doc = copy.deepcopy(fast_fixtures())
    logstores = doc["sls"]["projects"]["demo-project"]["logstores"]
    for i in range(GROUPS):
        store = logstores.setdefault(f"ls-{i // 30}", {"shards": 2, "consumer_groups": {}})
        store["consumer_groups"][f"g-{i}"] = {"timeout": 10, "order": False}
    return doc


def low_soft_limit() -> None:
    _, hard = resource.getrlimit(NOFILE)
    resource.setrlimit(NOFILE, (LOW, hard))


@pytest.mark.slow
def test_hundreds_of_groups_start_under_a_soft_limit_below_their_locks(tmp_path: Path) -> None:
    """Before: exit 2 at the 250th lock ("Too many open files") with the limit most services get."""
    _, hard = resource.getrlimit(NOFILE)
    if hard != resource.RLIM_INFINITY and hard < open_files.needed_for(GROUPS):
        pytest.skip(f"hard open-file limit {hard} is too low for this test")
    with EmulatorServer(parse_fixtures(many_groups_fixtures())) as emulator:
        demo = emulator.demo_config("sls")
        groups = [
            {**demo, "logstore": f"ls-{i // 30}", "consumer_group": f"g-{i}", "consumer": "fd-node"}
            | {"heartbeat_interval": 3, "timeout": 10}
            for i in range(GROUPS)
        ]
        config = write_config(tmp_path / "c.json", groups, runtime_dir=str(tmp_path / "run"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "shardbeat", "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=low_soft_limit,
        )
        joined: set[str] = set()
        guard = threading.Timer(60, proc.kill)  # bounded even if the groups never all join
        guard.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            record = json.loads(line)
            if record["event"] == "assignment":
                joined.add(record["group"])
            if len(joined) == GROUPS:
                proc.terminate()
        code = proc.wait(30)
        guard.cancel()
        assert proc.stderr is not None
        log = proc.stderr.read().decode(errors="replace")
        assert len(joined) == GROUPS, log[-2000:]
        assert code == 0, log[-2000:]
        assert "Too many open files" not in log
        assert f"open-file limit raised from {LOW}" in log
