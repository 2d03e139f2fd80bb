"""A peer trickling its answer a byte at a time cannot stretch a control-plane call past its deadline.

urllib3 re-arms its read timeout on every byte; before runtime/call_deadline.py, a bootstrap call
with a 1 s deadline against a trickled answer took as long as the peer liked (the whole answer).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from shardbeat.providers.base import Endpoint, HttpRequest
from shardbeat.runtime.cloud_credentials.http import DefaultSessions, FetchError, call
from shardbeat.runtime.http_loop import HttpLoop
from shardbeat.runtime.http_session import RequestsTransport
from shardbeat.runtime.transport import HttpTransport, TransportError

BODY = b'{"ok": true, "padding": "' + b"x" * 200 + b'"}'
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY)
TRICKLE = 0.02  # seconds per byte: the whole answer takes about 6 s
# A call kept to its deadline ends about 1 s in; one whose deadline is re-armed per read lasts the
# whole trickle (4.5 s for the body alone, 6 s with the headers). The bound between is generous for
# a loaded machine (2.5 s was tight there) and still tells the two apart.
LIMIT = 4.0


@pytest.fixture(params=["headers", "body"])
def trickler(request: pytest.FixtureRequest) -> Iterator[int]:
    """A loopback server that answers each connection a byte at a time (headers, or only the body)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1.0)
            try:
                conn.recv(65536)
                slow = HEAD + BODY if request.param == "headers" else BODY
                if request.param == "body":
                    conn.sendall(HEAD)
                for i in range(len(slow)):  # bounded: the answer's length
                    if stop.is_set():
                        return
                    conn.sendall(slow[i : i + 1])
                    time.sleep(TRICKLE)
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(2)


def test_requests_transport_ends_at_its_deadline(trickler: int) -> None:
    transport = RequestsTransport()
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        transport.send(
            Endpoint("http", "127.0.0.1", trickler, f"127.0.0.1:{trickler}"),
            HttpRequest("GET", "/", (), b""),
            started + 1.0,
        )
    took = time.monotonic() - started
    transport.close()
    assert caught.value.code == "Timeout"
    assert took < LIMIT, f"a 1 s call took {took:.1f}s"


@pytest.mark.parametrize("kind", [HttpTransport, HttpLoop], ids=["http.client", "loop"])
def test_heartbeat_transports_end_at_their_deadline_naming_what_was_late(
    trickler: int, kind: type[HttpTransport | HttpLoop], request: pytest.FixtureRequest
) -> None:
    transport = kind()
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        transport.send(
            Endpoint("http", "127.0.0.1", trickler, f"127.0.0.1:{trickler}"),
            HttpRequest("GET", "/", (), b""),
            started + 1.0,
        )
    took = time.monotonic() - started
    transport.close()
    assert (caught.value.code, caught.value.step) == ("Timeout", "answer")
    late = "answer body did not arrive" if "body" in request.node.callspec.id else "no answer before"
    assert caught.value.message.startswith(late), caught.value.message
    assert took < LIMIT, f"a 1 s call took {took:.1f}s"


def test_credential_fetch_ends_at_connect_plus_read(trickler: int) -> None:
    sessions = DefaultSessions()
    started = time.monotonic()
    with pytest.raises(FetchError, match="metadata role"):
        call(sessions.metadata(), "GET", f"http://127.0.0.1:{trickler}/", "metadata role", timeout=(0.5, 0.5))
    took = time.monotonic() - started
    sessions.close()
    assert took < LIMIT, f"a (0.5, 0.5) call took {took:.1f}s"
