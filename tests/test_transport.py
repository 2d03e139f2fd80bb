"""Both heartbeat transports (HttpTransport, blocking http.client; HttpLoop, the event loop) against small
local servers: keep-alive, deadlines, resets, refusals."""

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from shardbeat.providers.base import Endpoint, HttpRequest
from shardbeat.runtime.http_loop import HttpLoop
from shardbeat.runtime.transport import HttpTransport, Transport, TransportError

REQ = HttpRequest("POST", "/x?a=1", (("Host", "h"), ("Content-Length", "3")), b"[0]")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nDate: Sun, 06 May 2018 09:44:10 GMT\r\n\r\n[1]"

Handler = Callable[[socket.socket, int], bool]  # (connection, request number) -> keep serving?


@pytest.fixture
def server() -> Iterator[Callable[[Handler], tuple[int, list[int]]]]:
    socks: list[socket.socket] = []

    def start(handler: Handler) -> tuple[int, list[int]]:
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        socks.append(lsock)
        accepted: list[int] = []

        def serve() -> None:
            n = 0
            while True:
                try:
                    conn, _ = lsock.accept()
                except OSError:
                    return
                accepted.append(1)
                socks.append(conn)
                while True:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        break
                    if not data:
                        break
                    n += 1
                    try:
                        if not handler(conn, n):
                            break
                    except OSError:  # the client gave up first
                        break
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
        return lsock.getsockname()[1], accepted

    yield start
    for s in socks:
        s.close()


@pytest.fixture(params=[HttpTransport, HttpLoop], ids=["http.client", "loop"])
def kind(request: pytest.FixtureRequest) -> Callable[[], Transport]:
    return request.param  # type: ignore[no-any-return]


def ep(port: int) -> Endpoint:
    return Endpoint("http", "127.0.0.1", port, f"127.0.0.1:{port}")


def test_answers_are_read_and_connections_reused(server, kind) -> None:  # type: ignore[no-untyped-def]
    port, accepted = server(lambda c, n: c.sendall(OK) is None)
    t = kind()
    for _ in range(3):
        resp = t.send(ep(port), REQ, time.monotonic() + 2)
        assert resp.status == 200 and resp.body == b"[1]" and resp.headers["date"].startswith("Sun")
    assert len(accepted) == 1
    t.close()


def test_deadline_bounds_a_hanging_server(server, kind) -> None:  # type: ignore[no-untyped-def]
    port, _ = server(lambda c, n: True)  # reads, never answers
    t = kind()
    start = time.monotonic()
    with pytest.raises(TransportError) as err:
        t.send(ep(port), REQ, start + 0.3)
    assert err.value.code == "Timeout"
    assert time.monotonic() - start < 1.5


def test_server_closing_a_kept_alive_connection_is_retried_once(server, kind) -> None:  # type: ignore[no-untyped-def]
    # First request answered, then the server closes the connection; the next send must transparently
    # reconnect instead of failing the beat.
    port, accepted = server(lambda c, n: c.sendall(OK) is None and False)
    t = kind()
    assert t.send(ep(port), REQ, time.monotonic() + 2).status == 200
    time.sleep(0.05)
    assert t.send(ep(port), REQ, time.monotonic() + 2).status == 200
    assert len(accepted) == 2


def test_reset_without_answer_is_a_transport_error(server, kind) -> None:  # type: ignore[no-untyped-def]
    port, _ = server(lambda c, n: False)  # close without answering
    with pytest.raises(TransportError) as err:
        kind().send(ep(port), REQ, time.monotonic() + 2)
    assert err.value.code in {"ConnectionReset", "InvalidHTTP"}


def test_refused_connection(kind: Callable[[], Transport]) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(TransportError) as err:
        kind().send(ep(port), REQ, time.monotonic() + 2)
    assert err.value.code == "ConnectionRefused"


def test_oversized_answer_is_refused(server, kind) -> None:  # type: ignore[no-untyped-def]
    big = 2 << 20
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {big}\r\n\r\n".encode()
    port, _ = server(lambda c, n: c.sendall(head + b"1" * big) is None)
    with pytest.raises(TransportError) as err:
        kind().send(ep(port), REQ, time.monotonic() + 5)
    assert err.value.code == "ResponseTooLarge"


def test_garbage_answer_is_a_transport_error(server, kind) -> None:  # type: ignore[no-untyped-def]
    port, _ = server(lambda c, n: c.sendall(b"SSH-2.0-OpenSSH\r\n\r\n") is None and False)
    with pytest.raises(TransportError):
        kind().send(ep(port), REQ, time.monotonic() + 2)
