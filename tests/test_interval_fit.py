"""Issue 9 item 12: an interval the server's group timeout cannot carry is lowered to fit (with a
WARNING), never left to flap `assignment` / `lost` every interval."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import Plugin
from shardbeat.core.interval_fit import fitted_interval
from shardbeat.core.lease import default_margin
from shardbeat.emulator.server import EmulatorServer


@pytest.mark.parametrize(
    ("interval", "timeout", "expected"),
    [
        (8.0, 6.0, 2.0),  # the README flag example against the default emulator group
        (5.0, 6.0, 2.0),  # exactly the lease window: lapses on any latency
        (4.9, 6.0, None),  # fits (the config's own rule); the config warns above timeout/3
        (2.0, 6.0, None),
        (20.0, 1.0, 1 / 3),  # tiny server timeout: a third of it
        (60.0, 86400.0, None),
    ],
)
def test_fitted_interval(interval: float, timeout: float, expected: float | None) -> None:
    got = fitted_interval(interval, timeout, default_margin(timeout))
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_fitted_interval_always_leaves_room_for_a_retry() -> None:
    for timeout in (1, 2, 3, 5, 6, 10, 40, 60, 600):
        margin = default_margin(timeout)
        fitted = fitted_interval(timeout * 2.0, timeout, margin)
        assert fitted is not None and 2 * fitted <= timeout - margin + 1e-9, timeout


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_interval_longer_than_the_server_timeout_allows_never_flaps(
    emulator: EmulatorServer, tmp_path: Path, provider: str
) -> None:
    """`--interval 8` against the default emulator (group timeout 6 s, lease 5 s). (Failed before:
    one ERROR line, then `assignment` and `lost` alternated every 8 s.)"""
    group = emulator.demo_config(provider)
    flags = ["--endpoint", emulator.url, "--group", group["consumer_group"], "--consumer", "slowpoke"]
    if provider == "sls":
        flags += ["--project", group["project"], "--logstore", group["logstore"]]
    else:
        flags += ["--region", group["region"], "--logset-id", group["logset_id"]]
        for topic in group["topics"]:
            flags += ["--topic", topic]
    env = {}
    creds = group.get("credentials", {})
    for key, var in (
        ("access_key_id", "ALIBABA_CLOUD_ACCESS_KEY_ID"),
        ("access_key_secret", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        ("secret_id", "TENCENTCLOUD_SECRET_ID"),
        ("secret_key", "TENCENTCLOUD_SECRET_KEY"),
    ):
        if key in creds:
            env[var] = creds[key]
    p = Plugin(["run", "--provider", provider, *flags, "--interval", "8"], env=env)
    try:
        assert p.wait_for(lambda rs: any(r["event"] == "assignment" for r in rs), 30), p.log()
        # Past the 5 s lease and past the configured 8 s interval: leases keep coming, nothing lost.
        assert p.wait_for(lambda rs: len([r for r in rs if r["event"] == "lease"]) >= 4, 12), p.log()
        assert not p.events("lost"), p.all_records()
        assert p.terminate() == 0
        p.finish()
        log = p.log()
        assert "WARNING" in log and "beating every 2s instead" in log, log
        assert "ERROR" not in log and "Traceback" not in log, log
    finally:
        p.kill()
