"""The event-loop transport (HttpLoop): the emulator's faults give the same outcome through it as through
HttpTransport, many calls share one thread without one holding up another, the pool limits and queues
calls per endpoint, late connections are put to use, and `done` fires once, inside poll()."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fault_kit import admin
from harness import wait_for
from proxy_kit import PrivateCa, private_ca
from shardbeat.config.model import NetworkConfig
from shardbeat.emulator.server import EmulatorServer
from shardbeat.providers.base import Credentials, Endpoint, HttpRequest, HttpResponse
from shardbeat.providers.sls import SlsProvider
from shardbeat.runtime import connect, http_answer, http_exchange, http_loop
from shardbeat.runtime.http_loop import HttpLoop
from shardbeat.runtime.network import Network
from shardbeat.runtime.transport import HttpTransport, Transport, TransportError

Outcome = tuple[str, Any]  # ("status", 200) or ("error", (code, step))


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


class Beats:
    """Signed SLS heartbeats for one consumer of the emulator's demo group."""

    def __init__(self, server: EmulatorServer, consumer: str) -> None:
        demo = server.demo_config("sls")
        self.provider = SlsProvider(
            server.url, demo["project"], demo["logstore"], demo["consumer_group"], consumer
        )
        self.creds = Credentials(
            demo["credentials"]["access_key_id"], demo["credentials"]["access_key_secret"]
        )

    def request(self) -> HttpRequest:
        return self.provider.heartbeat_request({}, time.time(), self.creds)

    def outcome(self, transport: Transport, budget: float = 2.0) -> Outcome:
        try:
            answer = transport.send(self.provider.endpoint, self.request(), time.monotonic() + budget)
        except TransportError as exc:
            return ("error", (exc.code, exc.step))
        return ("status", answer.status)


# effect rule -> what a call meets on a fresh connection, whichever transport makes it
FAULTS: dict[str, tuple[dict[str, Any], float, Outcome]] = {
    "trickle": ({"effect": "trickle", "seconds": 0.05}, 0.5, ("error", ("Timeout", "answer"))),
    "oversized": ({"effect": "oversized"}, 5.0, ("error", ("ResponseTooLarge", "answer"))),
    "malformed": ({"effect": "malformed"}, 2.0, ("status", 200)),
    "http10": ({"effect": "http10"}, 2.0, ("status", 200)),
    "html200": ({"effect": "html200"}, 2.0, ("status", 200)),
    "redirect": ({"effect": "redirect"}, 2.0, ("status", 302)),
    "delay": ({"effect": "delay", "seconds": 1.0}, 0.3, ("error", ("Timeout", "answer"))),
    "hang": ({"effect": "hang", "seconds": 2.0}, 0.3, ("error", ("Timeout", "answer"))),
    "reset": ({"effect": "reset"}, 2.0, ("error", ("ConnectionReset", "answer"))),
    "drop": ({"effect": "drop"}, 2.0, ("error", ("ConnectionReset", "answer"))),
    "status": ({"effect": "status", "status": 503}, 2.0, ("status", 503)),
}


@pytest.mark.parametrize("effect", list(FAULTS))
@pytest.mark.parametrize("kind", [HttpTransport, HttpLoop], ids=["http.client", "loop"])
def test_emulator_faults_give_both_transports_the_same_outcome(
    emulator: EmulatorServer, effect: str, kind: Callable[[], Transport]
) -> None:
    rule, budget, expected = FAULTS[effect]
    consumer = f"fault-{effect}-{kind.__name__}"
    beats = Beats(emulator, consumer)
    transport = kind()
    try:
        admin(emulator, "POST", "/_admin/faults", {**rule, "consumer": consumer, "count": 1})
        started = time.monotonic()
        assert beats.outcome(transport, budget) == expected
        assert time.monotonic() - started < budget + 1.5  # the deadline held
        assert beats.outcome(transport) == ("status", 200)  # and the transport carries on
    finally:
        admin(emulator, "DELETE", "/_admin/faults")
        transport.close()


@pytest.mark.parametrize("effect", ["reset", "drop"])
@pytest.mark.parametrize("kind", [HttpTransport, HttpLoop], ids=["http.client", "loop"])
def test_a_reused_connection_closed_without_an_answer_is_retried_once(
    emulator: EmulatorServer, effect: str, kind: Callable[[], Transport]
) -> None:
    consumer = f"retry-{effect}-{kind.__name__}"
    beats = Beats(emulator, consumer)
    transport = kind()
    try:
        assert beats.outcome(transport) == ("status", 200)  # the connection is now kept alive
        admin(emulator, "POST", "/_admin/faults", {"effect": effect, "consumer": consumer, "count": 1})
        assert beats.outcome(transport) == ("status", 200)  # one fresh try, which the fault spared
        admin(emulator, "POST", "/_admin/faults", {"effect": effect, "consumer": consumer, "count": 2})
        outcome = beats.outcome(transport)  # only once
        assert outcome[0] == "error" and outcome[1][0] == "ConnectionReset"
        if kind is HttpLoop:  # (HttpTransport names the step "connect": http.client dropped the socket)
            assert outcome[1][1] == "answer"
    finally:
        admin(emulator, "DELETE", "/_admin/faults")
        transport.close()


def collect(loop: HttpLoop, calls: list[tuple[Endpoint, HttpRequest, float]]) -> list[Any]:
    results: list[Any] = [None] * len(calls)
    left = [len(calls)]

    def done_for(i: int) -> Callable[[HttpResponse | TransportError], None]:
        def done(result: HttpResponse | TransportError) -> None:
            assert results[i] is None, "done fired twice"
            results[i] = result
            left[0] -= 1

        return done

    for i, (endpoint, request, deadline) in enumerate(calls):
        loop.start(endpoint, request, deadline, done_for(i))
    for _ in range(10_000):
        if not left[0]:
            break
        loop.poll(1.0)
    assert left[0] == 0
    return results


def test_a_silent_server_holds_up_no_other_call(emulator: EmulatorServer) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) and never answers
    try:
        port = silent.getsockname()[1]
        loop = HttpLoop()
        beats = Beats(emulator, "concurrent")
        now = time.monotonic()
        stuck = Endpoint("http", "127.0.0.1", port, "x")
        calls = [(stuck, beats.request(), now + 1.0)] + [
            (beats.provider.endpoint, beats.request(), now + 5)
        ] * 20
        finished: list[float] = []
        results = collect_timed(loop, calls, finished)
        assert isinstance(results[0], TransportError) and (results[0].code, results[0].step) == (
            "Timeout",
            "answer",
        )
        assert all(isinstance(r, HttpResponse) and r.status == 200 for r in results[1:])
        assert max(finished[1:]) < finished[0]  # every answer came while the silent call still waited
        loop.close()
    finally:
        silent.close()


def collect_timed(
    loop: HttpLoop, calls: list[tuple[Endpoint, HttpRequest, float]], at: list[float]
) -> list[Any]:
    at.extend([0.0] * len(calls))
    results: list[Any] = [None] * len(calls)
    for i, (endpoint, request, deadline) in enumerate(calls):

        def done(result: Any, i: int = i) -> None:
            results[i], at[i] = result, time.monotonic()

        loop.start(endpoint, request, deadline, done)
    for _ in range(10_000):
        if all(r is not None for r in results):
            break
        loop.poll(1.0)
    return results


class CountingServer:
    """HTTP/1.1 keep-alive on loopback, one thread per connection, answering after `delay` seconds;
    counts connections and the most requests in progress at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.accepted = 0
        self.requests = 0
        self.answered = 0
        self.busy = 0
        self.most_busy = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                with self._lock:
                    self.requests += 1
                    self.busy += 1
                    self.most_busy = max(self.most_busy, self.busy)
                time.sleep(self.delay)
                with self._lock:
                    self.busy -= 1
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
                with self._lock:
                    self.answered += 1
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)  # a FIN now, though a thread still waits in recv
                conn.close()


REQ = HttpRequest("POST", "/", (("Host", "h"), ("Content-Length", "2")), b"[]")


def test_calls_beyond_the_per_endpoint_limit_wait_their_turn() -> None:
    server = CountingServer(delay=0.05)
    loop = HttpLoop(max_in_flight_per_host=2, max_idle_per_host=2)
    try:
        endpoint = Endpoint("http", "127.0.0.1", server.port, "h")
        results = collect(loop, [(endpoint, REQ, time.monotonic() + 10)] * 8)
        assert all(isinstance(r, HttpResponse) and r.body == b"[]" for r in results)
        assert server.accepted == 2 and server.most_busy == 2
        # a queued call whose deadline comes before its turn fails at its deadline, not later
        now = time.monotonic()
        results = collect(
            loop, [(endpoint, REQ, now + 5), (endpoint, REQ, now + 5), (endpoint, REQ, now + 0.02)]
        )
        assert isinstance(results[2], TransportError) and results[2].code == "Timeout"
        assert all(isinstance(r, HttpResponse) for r in results[:2])
        # and it says so: no TCP handshake was tried, so no firewall hint
        assert results[2].step == "queue"
        words = results[2].describe(endpoint)
        assert "TCP handshake" not in words and "were not answered yet" in words, words
    finally:
        loop.close()
        server.close()


def test_a_connection_opened_after_its_call_timed_out_serves_the_next_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = CountingServer()
    real_open = connect.open_socket
    slow = threading.Event()

    def late_open(*args: Any, **kwargs: Any) -> socket.socket:
        if not slow.is_set():
            slow.set()
            args[6]("connect")  # on_step: the step the loop names at the deadline
            time.sleep(0.4)  # past the first call's deadline
            args = (*args[:4], time.monotonic() + 5, *args[5:])
        return real_open(*args, **kwargs)

    monkeypatch.setattr(http_loop, "open_socket", late_open)
    loop = HttpLoop()
    try:
        endpoint = Endpoint("http", "127.0.0.1", server.port, "h")
        with pytest.raises(TransportError) as caught:
            loop.send(endpoint, REQ, time.monotonic() + 0.1)
        assert (caught.value.code, caught.value.step) == ("Timeout", "connect")
        deadline = time.monotonic() + 5
        while server.accepted == 0 and time.monotonic() < deadline:
            loop.poll(0.05)  # the late connection arrives and is kept
        assert loop.send(endpoint, REQ, time.monotonic() + 2).status == 200
        assert server.accepted == 1
    finally:
        loop.close()
        server.close()


def test_done_fires_once_and_only_inside_poll() -> None:
    loop = HttpLoop()
    seen: list[Any] = []
    loop.start(Endpoint("http", "127.0.0.1", 9, "h"), REQ, time.monotonic() - 1, seen.append)
    assert seen == [] and loop.in_flight == 1 and loop.next_deadline() is not None
    loop.poll(0)
    assert len(seen) == 1 and isinstance(seen[0], TransportError) and seen[0].code == "Timeout"
    loop.poll(0)
    assert len(seen) == 1 and loop.in_flight == 0 and loop.next_deadline() is None
    loop.close()


def test_wakeup_from_another_thread_ends_a_poll_early() -> None:
    loop = HttpLoop()
    try:
        threading.Timer(0.05, loop.wakeup).start()
        started = time.monotonic()
        loop.poll(10)
        assert time.monotonic() - started < 5
    finally:
        loop.close()


def test_an_idle_connection_the_server_closed_is_dropped_without_a_failed_call() -> None:
    server = CountingServer()
    loop = HttpLoop()
    try:
        endpoint = Endpoint("http", "127.0.0.1", server.port, "h")
        assert loop.send(endpoint, REQ, time.monotonic() + 2).status == 200
        server.close()  # closes the kept-alive connection too
        server2_deadline = time.monotonic() + 2
        while loop._pools[("http", "127.0.0.1", server.port)].idle and time.monotonic() < server2_deadline:
            loop.poll(0.05)
        assert not loop._pools[("http", "127.0.0.1", server.port)].idle
    finally:
        loop.close()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCa:
    return private_ca(tmp_path_factory.mktemp("ca"))


def test_tls_keep_alive_and_many_calls_in_flight(ca: PrivateCa) -> None:
    with EmulatorServer(tls=ca.server_context()) as server:
        loop = HttpLoop(network=Network(NetworkConfig(ca_file=str(ca.ca_file), ca_source="tls.ca_file")))
        try:
            beats = [Beats(server, f"tls-{i}") for i in range(10)]
            for _ in range(3):
                now = time.monotonic()
                calls = [(b.provider.endpoint, b.request(), now + 5) for b in beats]
                results = collect(loop, calls)
                for b, r in zip(beats, results, strict=True):
                    assert isinstance(r, HttpResponse) and r.status == 200, r
                    assert isinstance(b.provider.parse_heartbeat(r), dict)  # 4 shards, 10 consumers
        finally:
            loop.close()


def test_a_request_larger_than_the_socket_buffers_goes_out_in_pieces() -> None:
    body = b"x" * (8 << 20)
    listener = socket.create_server(("127.0.0.1", 0))
    got: list[int] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            rest = data.partition(b"\r\n\r\n")[2]
            received = len(rest)
            while received < len(body):
                time.sleep(0.001)  # a slow reader: the client's sends fill the buffers
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
            got.append(received)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    loop = HttpLoop()
    try:
        request = HttpRequest("POST", "/", (("Host", "h"), ("Content-Length", str(len(body)))), body)
        endpoint = Endpoint("http", "127.0.0.1", listener.getsockname()[1], "h")
        assert loop.send(endpoint, request, time.monotonic() + 20).body == b"ok"
        assert got == [len(body)]
    finally:
        loop.close()
        listener.close()


def test_a_large_answer_over_tls_is_read_whole(ca: PrivateCa) -> None:
    """TLS records decrypted ahead of select() (SSLSocket.pending) are read, not left waiting."""
    with EmulatorServer(tls=ca.server_context()) as server:
        loop = HttpLoop(network=Network(NetworkConfig(ca_file=str(ca.ca_file), ca_source="tls.ca_file")))
        try:
            beats = Beats(server, "tls-large")
            admin_tls(
                server, ca, {"effect": "oversized", "bytes": 900_000, "consumer": "tls-large", "count": 3}
            )
            for _ in range(3):
                answer = loop.send(beats.provider.endpoint, beats.request(), time.monotonic() + 10)
                assert answer.status == 200 and len(answer.body) == 900_000
        finally:
            loop.close()


def admin_tls(server: EmulatorServer, ca: PrivateCa, rule: dict[str, Any]) -> None:
    import json
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=str(ca.ca_file))
    request = urllib.request.Request(
        server.url + "/_admin/faults", json.dumps(rule).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5, context=context) as answer:
        assert answer.status == 200


def test_an_endpoint_whose_dns_hangs_cannot_take_every_connector_thread() -> None:
    from shardbeat.runtime.resolver import Resolver

    release = threading.Event()

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        release.wait(10)  # a DNS server that never answers
        raise socket.gaierror(socket.EAI_AGAIN, "released")

    server = CountingServer()
    loop = HttpLoop(resolver=Resolver(getaddrinfo), connector_threads=8)
    try:
        now = time.monotonic()
        hung = Endpoint("http", "hung.test", 80, "hung.test")
        good = Endpoint("http", "127.0.0.1", server.port, "h")
        at: list[float] = []
        results = collect_timed(loop, [(hung, REQ, now + 1.0)] * 20 + [(good, REQ, now + 5)], at)
        assert isinstance(results[-1], HttpResponse) and at[-1] < now + 1.0  # not stuck behind the 20
        errors = [(r.code, r.step) for r in results[:-1]]
        assert errors.count(("Timeout", "resolve")) == 4  # the lookups under way (MAX_OPENING)
        assert errors.count(("Timeout", "queue")) == 16  # waiting for a connection: no DNS blamed
        assert loop._connectors.threads <= 8
    finally:
        release.set()
        loop.close()
        server.close()


def test_a_bug_met_on_one_connection_fails_that_call_and_not_the_loop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception nobody foresaw while reading one server's answer (here a parser bug, as a
    Content-Length past Python's int() digit limit once was) must fail that call with a named error and
    leave every other call, and the loop, going: it escaped poll() and ended the process silently."""
    tripping, healthy = CountingServer(), CountingServer()
    real_feed = http_answer.AnswerParser.feed

    def feed(self: http_answer.AnswerParser, data: bytes) -> HttpResponse | None:
        if self_port.get(id(self)) == tripping.port:
            raise ValueError("a parser bug")
        return real_feed(self, data)

    self_port: dict[int, int] = {}  # parser -> the port of its connection
    real_begin = http_exchange.Conn.begin

    def begin(self: http_exchange.Conn, call: http_exchange.Call) -> None:
        real_begin(self, call)
        assert self.parser is not None
        self_port[id(self.parser)] = self.pool.endpoint.port

    monkeypatch.setattr(http_answer.AnswerParser, "feed", feed)
    monkeypatch.setattr(http_exchange.Conn, "begin", begin)
    loop = HttpLoop()
    try:
        now = time.monotonic()
        bad = Endpoint("http", "127.0.0.1", tripping.port, "h")
        good = Endpoint("http", "127.0.0.1", healthy.port, "h")
        results = collect(loop, [(bad, REQ, now + 3), (good, REQ, now + 3), (good, REQ, now + 3)])
        assert isinstance(results[0], TransportError) and results[0].code == "TransportFailure"
        assert results[0].step == "answer"
        assert all(isinstance(r, HttpResponse) and r.status == 200 for r in results[1:])
        assert any("internal error reading an answer" in r.getMessage() for r in caplog.records)
        assert loop.send(good, REQ, time.monotonic() + 2).status == 200  # the loop goes on
    finally:
        loop.close()
        tripping.close()
        healthy.close()


@pytest.mark.parametrize("answer", ["whole", "partial"])
def test_a_server_that_answers_before_it_reads_the_request_neither_spins_nor_stalls_the_loop(
    answer: str,
) -> None:
    """A server may answer early (a 413) and stop reading while the request still fills the socket
    buffers: its bytes keep the socket readable, and a loop that only tried to write then went round
    without pause until the deadline (a core busy, every other call's wake-ups late). Read it: a whole
    early answer is the call's answer (the connection, owed the rest of the request, is not reused);
    a partial one waits, idle, for the deadline."""
    early = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"
    listener = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(early if answer == "whole" else early[:20])
            release.wait(10)  # never reads the request

    threading.Thread(target=serve, daemon=True).start()
    body = b"x" * (32 << 20)  # more than every socket buffer on the way
    request = HttpRequest("POST", "/", (("Host", "h"), ("Content-Length", str(len(body)))), body)
    endpoint = Endpoint("http", "127.0.0.1", listener.getsockname()[1], "h")
    loop = HttpLoop()
    polls = 0
    results: list[HttpResponse | TransportError] = []
    try:
        loop.start(endpoint, request, time.monotonic() + 1.0, results.append)
        while not results and polls < 100_000:
            loop.poll(0.5)
            polls += 1
        assert polls < 50, f"{polls} polls: the loop spun"
        if answer == "whole":
            assert isinstance(results[0], HttpResponse) and results[0].status == 413
            assert not loop._pools[("http", "127.0.0.1", endpoint.port)].idle
        else:
            assert isinstance(results[0], TransportError)
            assert (results[0].code, results[0].step) == ("Timeout", "answer")
    finally:
        release.set()
        loop.close()
        listener.close()


@pytest.mark.parametrize("cut", ["head", "body"])
@pytest.mark.parametrize("kind", [HttpTransport, HttpLoop], ids=["http.client", "loop"])
def test_a_reset_mid_answer_reads_the_same_through_both_transports(
    cut: str, kind: Callable[[], Transport]
) -> None:
    """A server (or a proxy) that resets the connection once part of the answer is out: before the
    head is whole it is a reset, after it an answer cut short - the loop called the second 'connection
    closed by the server without an answer', which is false and not what HttpTransport says."""
    sent = (
        b"HTTP/1.1 200 OK\r\nContent-Le"
        if cut == "head"
        else b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n[1,"
    )
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        conn.sendall(sent)
        time.sleep(0.1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # RST

    threading.Thread(target=serve, daemon=True).start()
    transport = kind()
    try:
        endpoint = Endpoint("http", "127.0.0.1", listener.getsockname()[1], "h")
        with pytest.raises(TransportError) as caught:
            transport.send(endpoint, REQ, time.monotonic() + 5)
        expected = ("ConnectionReset", "answer") if cut == "head" else ("InvalidHTTP", "answer")
        assert (caught.value.code, caught.value.step) == expected, caught.value
        if cut == "body":
            assert "cut short" in caught.value.message
    finally:
        transport.close()
        listener.close()


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A loopback port whose TCP handshakes get no reply: a listener that never accepts, its accept
    queue full, so the kernel drops further SYNs (as a firewall that drops traffic does)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(0.3)
            try:
                probe.connect(("127.0.0.1", port))
            except TimeoutError:
                probe.close()
                break  # the queue is full: handshakes now stall
            fillers.append(probe)
        else:
            pytest.fail("could not fill the accept queue of a loopback listener")
        yield port
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


def test_endpoints_whose_set_up_stalls_cannot_delay_a_healthy_endpoints_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every kind of stalled set-up at once (two hung DNS names, a black-holed TCP handshake, a proxy
    that never answers CONNECT, a TLS server that never finishes its handshake), each holding as many
    set-ups as an endpoint may (MAX_OPENING): a healthy endpoint's new connection is made at once,
    not after theirs time out (it waited in the queue for a connector thread before)."""
    from shardbeat.runtime.resolver import Resolver

    release = threading.Event()

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        release.wait(10)  # a DNS server that never answers
        raise socket.gaierror(socket.EAI_AGAIN, "released")

    silent_proxy = socket.create_server(("127.0.0.1", 0))  # takes connections (backlog), says nothing
    silent_tls = socket.create_server(("127.0.0.1", 0))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{silent_proxy.getsockname()[1]}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the proxy serves tunnel.test only
    server = CountingServer()
    loop = HttpLoop(resolver=Resolver(getaddrinfo))
    try:
        with black_hole() as dropped:
            stalled = {
                "resolve": Endpoint("http", "hung-a.test", 80, "hung-a.test"),
                "resolve-b": Endpoint("http", "hung-b.test", 80, "hung-b.test"),
                "connect": Endpoint("http", "127.0.0.1", dropped, "h"),
                "proxy": Endpoint("https", "tunnel.test", 443, "tunnel.test"),
                "tls": Endpoint("https", "127.0.0.1", silent_tls.getsockname()[1], "h"),
            }
            healthy = Endpoint("http", "127.0.0.1", server.port, "h")
            now = time.monotonic()
            calls = [(e, REQ, now + 2.5) for e in stalled.values() for _ in range(http_loop.MAX_OPENING)]
            at: list[float] = []
            results = collect_timed(loop, [*calls, (healthy, REQ, now + 30)], at)
        assert isinstance(results[-1], HttpResponse) and results[-1].status == 200, results[-1]
        assert at[-1] < min(at[:-1])  # answered while every stalled set-up still waited
        per, chain = http_loop.MAX_OPENING, ["resolve", "connect", "proxy", "tls"]
        for i, name in enumerate(stalled):
            step = name.split("-")[0]
            errors = [(r.code, r.step) for r in results[i * per : (i + 1) * per]]
            # each stalled where it was meant to; a call behind its endpoint's share waited ("queue"),
            # or its set-up began at its deadline, when another endpoint's thread came free
            earlier = chain[: chain.index(step)] if step != "tls" else ["resolve", "connect"]
            assert errors[0] == ("Timeout", step), (name, errors)
            assert {c for c, _ in errors} == {"Timeout"}, (name, errors)
            assert {s for _, s in errors} <= {step, "queue", *earlier}, (name, errors)
    finally:
        release.set()
        loop.close()
        server.close()
        silent_proxy.close()
        silent_tls.close()


def test_the_blocking_face_lets_no_stalled_call_delay_another_threads_call() -> None:
    """HttpTransport gives each calling thread its own loop (and connector threads): a call stalled in
    its set-up holds only its own thread. The stalled calls' 4 s deadlines leave a loaded machine's
    healthy call room (it lost to 2 s ones under load); one held behind them would still lose."""
    stall_for = 4.0
    server = CountingServer()
    transport = HttpTransport()
    try:
        with black_hole() as dropped:
            stalled = Endpoint("http", "127.0.0.1", dropped, "h")
            healthy = Endpoint("http", "127.0.0.1", server.port, "h")
            outcomes: list[tuple[str, float]] = []

            def stall() -> None:
                try:
                    transport.send(stalled, REQ, time.monotonic() + stall_for)
                except TransportError as exc:
                    outcomes.append((f"{exc.code}/{exc.step}", time.monotonic()))

            threads = [threading.Thread(target=stall) for _ in range(12)]
            for thread in threads:
                thread.start()
            time.sleep(0.2)  # every stalled call is in its handshake
            assert transport.send(healthy, REQ, time.monotonic() + 30).status == 200
            answered = time.monotonic()
            for thread in threads:
                thread.join(stall_for + 10)
        assert [o for o, _ in outcomes] == ["Timeout/connect"] * 12
        assert answered < min(t for _, t in outcomes)
    finally:
        transport.close()
        server.close()


def test_a_call_whose_turn_comes_after_its_deadline_is_not_sent() -> None:
    """A loop that comes back late (a loaded machine): a call waiting for a connection whose turn comes
    after its deadline ends as a Timeout unsent. (It was written, then timed out in the same poll: for
    a heartbeat, a claim put on the wire after its lease.)"""
    clock = [100.0]
    server = CountingServer(delay=1.0)  # the first answer comes once the loop has stopped polling
    loop = HttpLoop(monotonic=lambda: clock[0], max_in_flight_per_host=1)
    endpoint = Endpoint("http", "127.0.0.1", server.port, "h")
    first: list[HttpResponse | TransportError] = []
    second: list[HttpResponse | TransportError] = []
    try:
        loop.start(endpoint, REQ, 1000.0, first.append)
        loop.start(endpoint, REQ, 101.0, second.append)  # waits: one call at a time on this endpoint
        deadline = time.monotonic() + 10
        while server.requests < 1 and time.monotonic() < deadline:
            loop.poll(0.01)
        assert server.requests == 1 and not second
        # No poll now: the first answer waits in the socket while the loop is "away"; it comes back
        # past the second call's deadline, and that answer frees the connection for it.
        while server.answered < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        clock[0] = 102.0
        while not (first and second) and time.monotonic() < deadline:
            loop.poll(0.05)
        assert isinstance(first[0], HttpResponse) and first[0].status == 200, first
        assert len(second) == 1 and isinstance(second[0], TransportError), second
        assert second[0].code == "Timeout"
        time.sleep(0.1)
        assert server.requests == 1  # the second call never reached the server
    finally:
        loop.close()
        server.close()


def test_a_name_whose_first_address_drops_handshakes_is_reached_on_its_next_one() -> None:
    """A name resolving to a black-holed address first (IPv6 configured but dropped on the way, a dead
    A record) and a working one second: the set-up moves on to the second address in time. (The first
    took the call's whole deadline: every heartbeat timed out in "connect" and the lease was lost.)"""
    from shardbeat.runtime.resolver import Resolver

    server = CountingServer()
    with black_hole() as dropped:

        def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", dropped)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", server.port)),
            ]

        loop = HttpLoop(resolver=Resolver(getaddrinfo))
        try:
            endpoint = Endpoint("http", "two-addresses.test", 80, "two-addresses.test")
            answer = loop.send(endpoint, REQ, time.monotonic() + 5.0)
            assert answer.status == 200 and server.accepted == 1
        finally:
            loop.close()
            server.close()


def test_each_address_but_the_last_gets_a_share_of_the_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """connect_first's per-address timeouts: the time left split over the addresses still to try, at
    least connect.MIN_ATTEMPT (when that much is left); the last address gets all that is left."""
    clock = [0.0]
    timeouts: list[float | None] = []

    class Unanswered(socket.socket):
        def connect(self, address: Any) -> None:
            timeouts.append(self.gettimeout())
            clock[0] += timeouts[-1] or 0.0
            raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "socket", Unanswered)
    addresses = [(socket.AF_INET, ("127.0.0.1", 9))] * 4
    with pytest.raises(TimeoutError):
        connect.connect_first(addresses, 8.0, lambda: clock[0])
    assert timeouts == [2.0, 2.0, 2.0, 2.0]
    clock[0] = 0.0
    timeouts.clear()
    with pytest.raises(TimeoutError):
        connect.connect_first(addresses, 2.5, lambda: clock[0])
    assert timeouts == [1.0, 1.0, 0.5]  # the floor, then what is left; the spent deadline ends the tries


def test_the_rest_of_a_request_is_not_sent_once_its_deadline_passed() -> None:
    """A server that stops reading mid-request (its window full) and reads again only after the call's
    deadline: the rest of the request is not written then (the loop wrote it on the first write event,
    before the same poll timed the call out: the whole request reached the server past its deadline)."""
    body = b"x" * (16 << 20)
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    ready = threading.Event()

    def accept() -> None:
        conn, _ = listener.accept()
        accepted.append(conn)
        ready.set()

    threading.Thread(target=accept, daemon=True).start()
    clock = [100.0]
    loop = HttpLoop(monotonic=lambda: clock[0])
    results: list[HttpResponse | TransportError] = []
    try:
        request = HttpRequest("POST", "/", (("Host", "h"), ("Content-Length", str(len(body)))), body)
        endpoint = Endpoint("http", "127.0.0.1", listener.getsockname()[1], "h")
        loop.start(endpoint, request, 101.0, results.append)
        until = time.monotonic() + 10
        conns: list[Any] = []
        while not conns and time.monotonic() < until:  # connected and written until the buffers filled
            loop.poll(0.05)
            conns = [k.data for k in loop._selector.get_map().values() if k.data is not None]
        assert conns and conns[0].out is not None, "the request should still be partly unsent"
        assert ready.wait(10)
        written = len(conns[0].call.data) - len(conns[0].out)  # what the client sent before its deadline
        clock[0] = 102.0  # the deadline passes while the loop is away; the server reads meanwhile
        server = accepted[0]
        server.settimeout(0.3)
        received = 0
        with contextlib.suppress(OSError):
            while chunk := server.recv(1 << 20):
                received += len(chunk)
        loop.poll(0)  # the loop comes back: writable, and past the deadline
        with contextlib.suppress(OSError):
            while chunk := server.recv(1 << 20):
                received += len(chunk)
        assert len(results) == 1 and isinstance(results[0], TransportError), results
        assert results[0].code == "Timeout"
        assert received == written  # not a byte more after the deadline
    finally:
        loop.close()
        listener.close()
        for conn in accepted:
            conn.close()


def test_many_calls_whose_turn_comes_after_their_deadline_end_without_recursion() -> None:
    """As above with 2000 waiting calls (1000 groups on one endpoint, a slow server): each overdue call
    ended through _send_on -> _keep_idle -> _pump -> _send_on, one level deeper per call, until a
    RecursionError escaped poll() (the runner's loop). Now they end in one loop, as queue Timeouts."""
    clock = [100.0]
    server = CountingServer(delay=0.3)
    loop = HttpLoop(monotonic=lambda: clock[0], max_in_flight_per_host=1)
    endpoint = Endpoint("http", "127.0.0.1", server.port, "h")
    first: list[HttpResponse | TransportError] = []
    waited: list[HttpResponse | TransportError] = []
    try:
        loop.start(endpoint, REQ, 1000.0, first.append)
        for _ in range(2000):
            loop.start(endpoint, REQ, 101.0, waited.append)
        deadline = time.monotonic() + 10
        while server.requests < 1 and time.monotonic() < deadline:
            loop.poll(0.01)
        while server.answered < 1 and time.monotonic() < deadline:  # the loop is "away"
            time.sleep(0.01)
        clock[0] = 102.0
        while not (first and len(waited) == 2000) and time.monotonic() < deadline:
            loop.poll(0.05)
        assert isinstance(first[0], HttpResponse) and first[0].status == 200, first
        assert {(r.code, r.step) for r in waited if isinstance(r, TransportError)} == {("Timeout", "queue")}
        assert len(waited) == 2000 and server.requests == 1
    finally:
        loop.close()
        server.close()


def test_a_call_already_past_its_deadline_says_the_process_was_late_not_the_network() -> None:
    """A call whose deadline passed before the loop could send it (a busy host, a stopped process): the
    error says so. It said "connect to ...: call deadline passed; no reply to the TCP handshake: a
    firewall may drop the traffic", sending an operator after a network that was never tried."""
    clock = [100.0]
    loop = HttpLoop(monotonic=lambda: clock[0])
    results: list[HttpResponse | TransportError] = []
    try:
        endpoint = Endpoint("http", "127.0.0.1", 9, "h")
        loop.start(endpoint, REQ, 101.0, results.append)
        clock[0] = 102.0  # the loop comes back past the deadline
        loop.poll(0)
        assert len(results) == 1 and isinstance(results[0], TransportError), results
        said = results[0].describe(endpoint, 1.0)
        assert results[0].code == "Timeout" and "ran late" in said, said
        assert "firewall" not in said and "TCP handshake" not in said, said
    finally:
        loop.close()


def test_a_queued_call_whose_turn_comes_after_its_deadline_starts_no_set_up() -> None:
    """A loop that comes back late (a loaded machine) finds the set-ups that timed out in their
    connector threads before it expires the calls queued behind them: a freed slot must not start a
    set-up (here a lookup that hangs, holding a connector thread) for a call already past its deadline.
    (It did: test_an_endpoint_whose_dns_hangs_cannot_take_every_connector_thread saw a fifth call
    time out in its lookup under load.)"""
    from shardbeat.runtime.resolver import Resolver

    release = threading.Event()
    lookups: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        lookups.append(host)
        release.wait(10)  # a DNS server that never answers
        raise socket.gaierror(socket.EAI_AGAIN, "released")

    loop = HttpLoop(resolver=Resolver(getaddrinfo), connector_threads=8)
    hung = Endpoint("http", "hung.test", 80, "hung.test")
    results: list[HttpResponse | TransportError] = []
    try:
        for _ in range(http_loop.MAX_OPENING + 1):
            loop.start(hung, REQ, time.monotonic() + 0.3, results.append)
        loop.poll(0)  # MAX_OPENING set-ups start, the last call waits for a slot
        assert wait_for(lambda: lookups, 10)
        time.sleep(0.6)  # the loop is "away" past every deadline; the set-ups give up meanwhile
        for _ in range(10):
            loop.poll(0.05)
        assert len(results) == http_loop.MAX_OPENING + 1
        steps = sorted((r.code, r.step) for r in results if isinstance(r, TransportError))
        assert steps == [("Timeout", "queue")] + [("Timeout", "resolve")] * http_loop.MAX_OPENING, steps
    finally:
        release.set()
        loop.close()
