"""Network errors on loopback name their step, and `run` logs a silent server at the first missed
deadline, then summarises the repeats."""

from __future__ import annotations

import datetime
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import Plugin, wait_for, write_config
from shardbeat.providers.base import Endpoint, HttpRequest
from shardbeat.runtime.http_loop import HttpLoop
from shardbeat.runtime.transport import HttpTransport, Transport, TransportError


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers (reads and discards)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=[HttpTransport, HttpLoop], ids=["http.client", "loop"])
def kind(request: pytest.FixtureRequest) -> Callable[[], Transport]:
    return request.param  # type: ignore[no-any-return]


def send(scheme: str, port: int, kind: Callable[[], Transport]) -> TransportError:
    transport = kind()  # the system trust store, as the process uses by default
    endpoint = Endpoint(scheme, "127.0.0.1", port, f"127.0.0.1:{port}")
    try:
        transport.send(endpoint, HttpRequest("POST", "/", [("Host", "x")], b"{}"), time.monotonic() + 0.5)
    except TransportError as exc:
        return exc
    finally:
        transport.close()
    raise AssertionError("the call succeeded")


def test_refused_is_a_connect_failure(kind: Callable[[], Transport]) -> None:
    port = free_port()
    error = send("http", port, kind)
    assert (error.code, error.step) == ("ConnectionRefused", "connect")
    assert error.describe(Endpoint("http", "127.0.0.1", port, "h")).startswith(
        f"connect to 127.0.0.1:{port}:"
    )


def test_a_server_that_never_answers_is_an_answer_failure(
    silent_server: int, kind: Callable[[], Transport]
) -> None:
    error = send("http", silent_server, kind)
    assert (error.code, error.step) == ("Timeout", "answer")


def test_https_to_a_server_that_never_handshakes_is_a_tls_failure(
    silent_server: int, kind: Callable[[], Transport]
) -> None:
    error = send("https", silent_server, kind)
    assert error.step == "tls", (error.code, error.message)


def log_time(log: str, words: str) -> float:
    """The time (epoch seconds) of the first log line with `words`."""
    line = next(line for line in log.splitlines() if words in line)
    return datetime.datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()


def test_run_logs_a_silent_server_at_the_first_missed_deadline_and_summarises_repeats(
    silent_server: int, tmp_path: Path
) -> None:
    group = {
        "provider": "sls",
        "endpoint": f"http://127.0.0.1:{silent_server}",
        "project": "demo-project",
        "logstore": "demo-logstore",
        "consumer_group": "demo-group",
        "consumer": "c1",
        "credentials": {"access_key_id": "emulator-akid", "access_key_secret": "emulator-secret"},
        "heartbeat_interval": 0.5,
        "timeout": 6,
    }
    cfg = write_config(tmp_path / "c.json", [group], runtime_dir=str(tmp_path / "run"))
    plugin = Plugin(["run", "--config", str(cfg)])
    try:
        needle = f"answer from 127.0.0.1:{silent_server}"
        assert wait_for(lambda: needle in plugin.log(), 30), plugin.log()
        # By the log's own times, so the interpreter's start-up (seconds on a loaded machine) is not
        # counted: the first call's budget (0.9 x interval) plus scheduling slack.
        took = log_time(plugin.log(), needle) - log_time(plugin.log(), "shardbeat starting")
        assert took < 0.45 + 1.0, took
        assert "the server accepted the connection but did not answer" in plugin.log()
        time.sleep(3)  # a retry every few hundred ms...
        warnings = [line for line in plugin.log().splitlines() if " WARNING " in line and needle in line]
        assert len(warnings) == 1, warnings  # ...but one line until a minute has passed
        errors = plugin.events("error")
        assert len(errors) >= 3 and needle in errors[0]["error"]["message"]  # records are not summarised
    finally:
        plugin.kill()
