"""DNS within the call's deadline: a resolver that never answers costs one failed call (bounded by its
deadline), never more, and never holds up other groups or the lease watchdog."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shardbeat.config import config_from_dict
from shardbeat.emulator.server import EmulatorServer
from shardbeat.providers.base import Endpoint, HttpRequest
from shardbeat.runtime import resolver as resolver_module
from shardbeat.runtime.http_loop import HttpLoop
from shardbeat.runtime.http_session import RequestsTransport, make_session
from shardbeat.runtime.network import Network
from shardbeat.runtime.resolver import Resolver, ResolveTimeout
from shardbeat.runtime.runner import Runner
from shardbeat.runtime.transport import HttpTransport, TransportError


class FakeDns:
    """getaddrinfo stand-in: names in `hang` never answer (until released), others map to 127.0.0.1."""

    def __init__(self, hang: set[str], fail: set[str] | None = None) -> None:
        self.hang = hang
        self.fail = fail or set()
        self.calls: list[str] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        with self.lock:
            self.calls.append(host)
        if any(host == h or host.endswith("." + h) for h in self.hang):
            self.release.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "released")
        if host in self.fail:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


@pytest.fixture
def dns() -> Iterator[FakeDns]:
    fake = FakeDns({"hung.test"}, {"nx.test"})
    yield fake
    fake.release.set()


def test_a_hung_lookup_gives_up_at_the_deadline_with_one_thread_per_name(dns: FakeDns) -> None:
    resolver = Resolver(dns)
    started = time.monotonic()
    for _ in range(5):
        with pytest.raises(ResolveTimeout):
            resolver.resolve("hung.test", 443, time.monotonic() + 0.05)
    assert time.monotonic() - started < 5  # five 50 ms budgets, with slack for a loaded machine
    assert dns.calls == ["hung.test"]  # still the one lookup in flight: no thread pile-up


def test_answers_are_cached_briefly_and_stand_in_when_a_fresh_lookup_fails(dns: FakeDns) -> None:
    now = [1000.0]
    resolver = Resolver(dns, monotonic=lambda: now[0], fresh_for=30, stale_for=300)
    first = resolver.resolve("ok.test", 80, now[0] + 5)
    assert first == [(socket.AF_INET, ("127.0.0.1", 80))]
    now[0] += 10
    assert resolver.resolve("ok.test", 80, now[0] + 5) == first
    assert dns.calls == ["ok.test"]
    now[0] += 30  # stale: looked up again
    resolver.resolve("ok.test", 80, now[0] + 5)
    assert dns.calls == ["ok.test", "ok.test"]
    dns.fail.add("ok.test")
    now[0] += 60
    assert resolver.resolve("ok.test", 80, now[0] + 5) == first  # the failure is covered by the old answer
    now[0] += 400
    with pytest.raises(socket.gaierror):
        resolver.resolve("ok.test", 80, now[0] + 5)


def test_a_hung_lookup_is_not_waited_for_to_the_deadline_when_an_older_answer_can_stand_in(
    dns: FakeDns,
) -> None:
    """The resolver hangs once an answer is stale: the old answer comes after at most STALE_WAIT (or
    half the time left), while there is still time to connect with it. (It came at the deadline, too
    late to use: every new connection failed for as long as the resolver hung, and with a server that
    closes idle connections, every beat did: the lease was lost although an answer stood ready.)"""
    resolver = Resolver(dns, fresh_for=0.0, stale_for=300)
    first = resolver.resolve("flaky.test", 80, time.monotonic() + 5)
    dns.hang.add("flaky.test")
    for left in (10.0, 0.4):
        started = time.monotonic()
        assert resolver.resolve("flaky.test", 80, started + left) == first
        took = time.monotonic() - started
        assert took < min(resolver_module.STALE_WAIT, left / 2) + 0.5, took  # not `left`
    assert dns.calls == ["flaky.test", "flaky.test"]  # the one hung lookup, still in flight


def test_ip_literals_never_look_anything_up(dns: FakeDns) -> None:
    resolver = Resolver(dns)
    assert resolver.resolve("127.0.0.1", 80, 0.0) == [(socket.AF_INET, ("127.0.0.1", 80))]
    assert resolver.resolve("::1", 80, 0.0)[0][0] == socket.AF_INET6
    assert dns.calls == []


def test_both_transports_fail_a_hung_lookup_within_the_deadline(dns: FakeDns) -> None:
    resolver = Resolver(dns)
    endpoint = Endpoint("http", "hung.test", 80, "hung.test")
    request = HttpRequest("GET", "/", (("Host", "hung.test"),), b"")
    session = make_session(Network(), resolver=resolver)
    for transport in (
        HttpTransport(resolver=resolver),
        HttpLoop(resolver=resolver),
        RequestsTransport(session),
    ):
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            transport.send(endpoint, request, started + 0.3)
        assert caught.value.code == "Timeout" and "DNS" in caught.value.message
        assert time.monotonic() - started < 3
        transport.close()
    nx = Endpoint("http", "nx.test", 80, "nx.test")
    for transport in (
        HttpTransport(resolver=resolver),
        HttpLoop(resolver=resolver),
        RequestsTransport(make_session(resolver=resolver)),
    ):
        with pytest.raises(TransportError) as caught:
            transport.send(nx, request, time.monotonic() + 2)
        assert caught.value.code == "NameResolution"
        transport.close()


class Records:
    broken = False  # the runner checks its writer before each beat (issue 9A)
    broken_reason: str | None = None

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def emit(self, record: dict[str, Any], on_written: Any = None, wake: bool = True) -> None:
        with self.lock:
            self.items.append(record)
        if on_written is not None:
            on_written()

    def wake(self) -> None:
        pass

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        pass

    dropped = 0
    broken = False
    broken_reason: str | None = None

    def of(self, consumer: str, event: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.items if r.get("consumer") == consumer and r["event"] == event]


def test_a_hung_dns_for_one_group_does_not_delay_another_group(dns: FakeDns) -> None:
    # The process's own exchange (the event loop): the stuck group's lookup waits on a connector
    # thread of its own, so the healthy group's beats go on as if it were not there.
    with EmulatorServer() as server:
        healthy = server.demo_config("sls")
        healthy.update(consumer="healthy", heartbeat_interval=0.5, timeout=6, lease_margin=0.5)
        stuck = dict(healthy, consumer="stuck", endpoint=f"http://hung.test:{server.port}")
        loaded = config_from_dict({"groups": [healthy, stuck]}, environ={})
        records = Records()
        exchange = HttpLoop(resolver=Resolver(dns))
        runner = Runner(loaded.config.groups, records, exchange=exchange)  # type: ignore[arg-type]
        thread = threading.Thread(target=runner.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (
                len(records.of("healthy", "lease")) < 5 or len(records.of("stuck", "error")) < 3
            ):
                time.sleep(0.05)
            assert len(records.of("healthy", "lease")) >= 5, records.items
            assert not records.of("healthy", "lost"), records.items
            errors = records.of("stuck", "error")
            assert errors and {e["error"]["code"] for e in errors} == {"Timeout"}
            assert not records.of("stuck", "assignment")
            assert len(errors) >= 3  # each attempt ended at its deadline and was retried
        finally:
            runner.stop()
            thread.join(5)
        # One lookup in flight at a time, not one per call.
        assert dns.calls.count("demo-project.hung.test") == 1, dns.calls
