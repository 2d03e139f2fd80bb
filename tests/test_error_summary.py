"""The log's summariser of repeated errors (pure, injected clock) and the words of network errors."""

from __future__ import annotations

import pytest

from shardbeat.core.error_summary import ErrorSummary
from shardbeat.providers.base import Endpoint
from shardbeat.runtime.net_errors import describe
from shardbeat.runtime.transport import TransportError


def test_the_first_failure_is_logged_then_repeats_are_counted_until_the_quiet_period() -> None:
    s = ErrorSummary(quiet=60)
    assert s.failed("Timeout", 0.0).log
    logged = [t for t in range(1, 130) if s.failed("Timeout", float(t)).log]
    assert logged == [60, 120]  # once a minute, not every second
    s2 = ErrorSummary(quiet=60)
    s2.failed("Timeout", 0.0)
    for t in range(1, 60):
        assert not s2.failed("Timeout", float(t)).log
    v = s2.failed("Timeout", 60.0)
    assert v.log and v.repeats == 59 and v.since == 60.0


def test_a_different_failure_is_logged_at_once() -> None:
    s = ErrorSummary(quiet=60)
    s.failed("Timeout", 0.0)
    assert not s.failed("Timeout", 1.0).log
    v = s.failed("ConnectionRefused", 2.0)
    assert v.log and v.repeats == 0
    assert s.failed("Timeout", 3.0).log  # and back again


def test_recovery_reports_the_streak_and_rearms() -> None:
    s = ErrorSummary(quiet=60)
    assert s.recovered(0.0) is None
    for t in range(5):
        s.failed("Timeout", float(t))
    streak = s.recovered(10.0)
    assert streak is not None and streak.failures == 5 and streak.duration == 10.0
    assert s.failed("Timeout", 11.0).log  # a new streak logs its first failure at once


ENDPOINT = Endpoint("https", "cn-hangzhou.log.aliyuncs.com", 443, "p.cn-hangzhou.log.aliyuncs.com")


@pytest.mark.parametrize(
    ("code", "step", "expected"),
    [
        (
            "NameResolution",
            "resolve",
            "resolve cn-hangzhou.log.aliyuncs.com: x; check the endpoint's spelling",
        ),
        ("ConnectionRefused", "connect", "connect to cn-hangzhou.log.aliyuncs.com:443: x; nothing listens"),
        (
            "Timeout",
            "connect",
            "connect to cn-hangzhou.log.aliyuncs.com:443: x; no reply to the TCP handshake",
        ),
        ("TLSError", "tls", "TLS handshake with cn-hangzhou.log.aliyuncs.com:443: x; check the system's CA"),
        (
            "Timeout",
            "answer",
            "answer from cn-hangzhou.log.aliyuncs.com:443: x; the server accepted the conn",
        ),
    ],
)
def test_network_errors_name_the_endpoint_the_step_and_the_fix(code: str, step: str, expected: str) -> None:
    assert TransportError(code, "x", step).describe(ENDPOINT).startswith(expected)


def test_an_unknown_code_still_names_the_endpoint() -> None:
    assert describe("Weird", "odd", None, "h:1") == "call to h:1: odd"
