"""The server wrapper the metrics endpoint and the emulator share (shardbeat.http_server), on its own.

Each property once, with a toy handler on loopback: the connection cap turns the surplus away at once,
the whole-connection deadline cuts a trickling client, a stop wakes a loop polling once an hour, and
cut_connections ends kept-alive connections.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from shardbeat.http_server import ServedHandler, ThreadedHttpServer


class _Hello(ServedHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class _Server(ThreadedHttpServer):
    label = "toy"
    idle_timeout = 10.0


@pytest.fixture
def capped() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Hello, max_connections=2)
    server.connection_deadline = 0.5
    server.start_serving("toy", 3600.0)
    yield server
    server.stop_serving()
    server.cut_connections()


def _closed_within(conn: socket.socket, seconds: float) -> bool:
    conn.settimeout(seconds)
    try:
        return conn.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def test_connections_over_the_cap_are_turned_away_at_once(capped: _Server) -> None:
    held = [socket.create_connection(("127.0.0.1", capped.server_port)) for _ in range(2)]
    try:
        time.sleep(0.1)  # both accepted and holding their slots
        surplus = socket.create_connection(("127.0.0.1", capped.server_port))
        assert _closed_within(surplus, 0.4)  # before the 0.5 s deadline could have cut it
        surplus.close()
    finally:
        for conn in held:
            conn.close()


def test_the_whole_connection_deadline_cuts_a_trickling_client(capped: _Server) -> None:
    conn = socket.create_connection(("127.0.0.1", capped.server_port))
    started = time.monotonic()
    conn.sendall(b"G")  # then nothing: the 10 s idle timeout alone would wait
    assert _closed_within(conn, 5.0)
    assert time.monotonic() - started < 3.0
    conn.close()


def test_a_stop_wakes_a_loop_that_polls_once_an_hour() -> None:
    server = _Server(("127.0.0.1", 0), _Hello)
    server.start_serving("toy", 3600.0)
    serving = server.serving
    assert serving is not None
    started = time.monotonic()
    server.stop_serving()
    assert not serving.is_alive() and time.monotonic() - started < 5.0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.server_port), timeout=1).close()


def test_cut_connections_ends_kept_alive_connections() -> None:
    server = _Server(("127.0.0.1", 0), _Hello)
    server.start_serving("toy", 0.05)
    conn = socket.create_connection(("127.0.0.1", server.server_port))
    try:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.settimeout(5)
        answer = b""
        while not answer.endswith(b"ok") and (chunk := conn.recv(100)):  # headers and body come apart
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")  # answered, and kept alive
        assert len(server.connections) == 1
        server.stop_serving()
        server.cut_connections()
        assert _closed_within(conn, 5.0)
        deadline = time.monotonic() + 5
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not server.connections  # each handler unregistered as it ended
    finally:
        conn.close()
