"""Issue 9 item 10: on-demand heartbeats (`{"op": "heartbeat"}`, reload) are coalesced and spaced per
group, so a control client looping on them cannot flood the service (it made 195 requests a second,
390 CLS RequestLimitExceeded in 5 s)."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from typing import Any

import pytest

from harness import wait_for
from shardbeat.config import config_from_dict
from shardbeat.core.on_demand import MAX_SPACING, MIN_SPACING, OnDemandBudget, on_demand_at, spacing
from shardbeat.emulator.server import EmulatorServer
from shardbeat.runtime.output import RecordWriter
from shardbeat.runtime.runner import Runner


def test_on_demand_beats_are_spaced_from_the_last_send() -> None:
    assert on_demand_at(10.0, None, 20.0) == 10.0  # nothing sent yet: at once
    assert on_demand_at(10.0, 9.8, 2.0) == 9.8 + 0.5  # a quarter of the interval
    assert on_demand_at(10.0, 9.8, 20.0) == 9.8 + MAX_SPACING  # an ask is answered within a second
    assert on_demand_at(30.0, 9.8, 20.0) == 30.0
    assert spacing(0.5) == MIN_SPACING


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_a_loop_of_heartbeat_ops_stays_at_a_small_bounded_rate(
    emulator: EmulatorServer, provider: str
) -> None:
    interval, window = 2.0, 3.0
    group = {**emulator.demo_config(provider), "consumer": "looper", "heartbeat_interval": interval}
    config = config_from_dict({"groups": [group]}).config
    read_fd, write_fd = os.pipe()
    got: list[dict[str, Any]] = []

    def read() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            got.extend(json.loads(line) for line in pipe)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    runner = Runner(config.groups, RecordWriter(write_fd))
    main = threading.Thread(target=runner.run, daemon=True)
    main.start()
    try:
        assert wait_for(lambda: any(r["event"] == "assignment" for r in got), 30)
        time.sleep(0.2)
        _, mark = emulator.world.receipts(0)
        started = time.monotonic()
        asks = 0
        # At least the window and 500 asks: a loaded machine fits fewer asks into the window (the
        # bound below grows with the time taken; the loop ends by 20 s whatever happens).
        while (time.monotonic() - started < window or asks <= 500) and time.monotonic() - started < 20:
            runner.beat_now(runner.sessions)  # what every `{"op": "heartbeat"}` does
            asks += 1
            time.sleep(0.001)
        took = time.monotonic() - started
        time.sleep(0.2)
        receipts, _ = emulator.world.receipts(mark)
        beats = [r for r in receipts if r.call.consumer == "looper"]
        # the grid (took / interval + 1) plus one on-demand beat per spacing
        allowed = int(took / interval) + 1 + int(took / spacing(interval)) + 1
        assert asks > 500
        assert 1 <= len(beats) <= allowed, (len(beats), asks)
        assert all(r.status == 200 for r in beats), [r.to_json() for r in beats]
    finally:
        runner.stop()
        main.join(5)
        os.close(write_fd)
        reader.join(5)
    assert not [r for r in got if r["event"] == "error"], got


def test_on_demand_beats_of_all_groups_together_keep_the_process_rate() -> None:
    budget = OnDemandBudget(rate=10.0)
    starts = [budget.slot(100.0) for _ in range(50)]  # 50 groups asked at once
    assert starts[0] == 100.0
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(starts))
    assert budget.slot(200.0) == 200.0  # an idle budget does not bank slots
