"""The emulator over HTTP: framing, keep-alive, dispatch, the admin API, faults, stopping, the CLI."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from shardbeat.emulator import server as server_module
from shardbeat.emulator.call import SLS
from shardbeat.emulator.server import EmulatorServer
from shardbeat.providers.base import Credentials, HttpRequest
from shardbeat.providers.cls import ClsProvider
from shardbeat.providers.sls import SlsProvider

KEY = Credentials("emulator-akid", "emulator-secret")
CLS_KEY = Credentials("emulator-secret-id", "emulator-secret-key")
ROOT = Path(__file__).parents[1]


def sls_beat(emulator: EmulatorServer, consumer: str = "c1", held: tuple[int, ...] = ()) -> HttpRequest:
    provider = SlsProvider(emulator.url, "demo-project", "demo-logstore", "demo-group", consumer)
    return provider.heartbeat_request({"demo-logstore": frozenset(held)}, time.time(), KEY)


def cls_beat(emulator: EmulatorServer, consumer: str = "c1") -> HttpRequest:
    topics = ("demo-topic-a", "demo-topic-b")
    provider = ClsProvider(emulator.url, "ap-guangzhou", "demo-logset", topics, "demo-group", consumer)
    return provider.heartbeat_request({}, time.time(), CLS_KEY)


def connect(emulator: EmulatorServer, timeout: float = 5.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=timeout)


def exchange(
    conn: http.client.HTTPConnection, request: HttpRequest
) -> tuple[int, http.client.HTTPMessage, bytes]:
    headers = {name: value for name, value in request.headers if name.lower() != "content-length"}
    conn.request(request.method, request.target, body=request.body, headers=headers)
    response = conn.getresponse()
    return response.status, response.headers, response.read()


def admin(emulator: EmulatorServer, method: str, path: str, doc: object = None) -> tuple[int, Any]:
    conn = connect(emulator)
    try:
        body = None if doc is None else json.dumps(doc).encode()
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


# -- framing


def test_every_answer_has_date_and_content_length(emulator: EmulatorServer) -> None:
    conn = connect(emulator)
    for request in (sls_beat(emulator), cls_beat(emulator)):
        status, headers, body = exchange(conn, request)
        assert status == 200
        assert int(headers["Content-Length"]) == len(body)
        assert abs(parsedate_to_datetime(headers["Date"]).timestamp() - time.time()) < 5
    conn.request("GET", "/_admin/state")
    response = conn.getresponse()
    assert response.headers["Date"] and int(response.headers["Content-Length"]) == len(response.read())


def test_date_header_follows_the_skewed_server_clock(emulator: EmulatorServer) -> None:
    assert admin(emulator, "POST", "/_admin/clock", {"skew": 600})[0] == 200
    conn = connect(emulator)
    status, headers, _ = exchange(conn, sls_beat(emulator))
    assert status == 200  # 10 minutes off is inside SLS's 15-minute window
    server_date = parsedate_to_datetime(headers["Date"]).timestamp()
    assert 590 < server_date - time.time() < 610
    admin(emulator, "POST", "/_admin/clock", {"skew": 16 * 60})
    status, headers, body = exchange(conn, sls_beat(emulator))
    assert (status, json.loads(body)["errorCode"]) == (400, "RequestTimeExpired")


def test_keep_alive_reuses_one_connection_and_one_thread(emulator: EmulatorServer) -> None:
    conn = connect(emulator)
    exchange(conn, sls_beat(emulator))
    threads_before = threading.active_count()
    for _ in range(20):
        status, _, _ = exchange(conn, sls_beat(emulator, held=(0, 1, 2, 3)))
        assert status == 200
    assert threading.active_count() == threads_before
    assert len(emulator._httpd.connections) == 1
    accepted = next(iter(emulator._httpd.connections))
    assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_each_answer_is_written_in_one_send(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    original = socketserver._SocketWriter.write  # type: ignore[attr-defined]

    def counting(self: Any, data: bytes) -> int:
        writes.append(bytes(data))
        return original(self, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(socketserver._SocketWriter, "write", counting)  # type: ignore[attr-defined]
    conn = connect(emulator)
    exchange(conn, sls_beat(emulator))
    exchange(conn, cls_beat(emulator))
    assert len(writes) == 2
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"\r\n\r\n[0,1,2,3]")
    assert b"\r\nContent-Type: application/json\r\n" in writes[1]


def test_heartbeat_round_trip_is_fast(emulator: EmulatorServer) -> None:
    conn = connect(emulator)
    exchange(conn, sls_beat(emulator))
    requests = [sls_beat(emulator, held=(0, 1, 2, 3)) for _ in range(100)]
    took: list[float] = []
    for request in requests:
        started = time.perf_counter()
        exchange(conn, request)
        took.append(time.perf_counter() - started)
    median = statistics.median(took)
    # ~0.3 ms on an idle machine; 40 ms every time would mean Nagle + delayed ACK are back. The median,
    # not the mean: a loaded machine's stalls (a mean of 17 ms under heavy load) hit a few trips.
    assert median < 0.02, f"median round trip {median * 1000:.2f} ms"


# -- dispatch and robustness


def test_dispatch_by_path_and_action(emulator: EmulatorServer) -> None:
    conn = connect(emulator)
    status, headers, body = exchange(conn, cls_beat(emulator))
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert "TopicPartitionsInfo" in json.loads(body)["Response"]
    # POST / without X-TC-Action is SLS: the Host names no project
    conn.request("POST", "/", body=b"{}", headers={"Host": "127.0.0.1"})
    response = conn.getresponse()
    assert response.status == 404 and json.loads(response.read())["errorCode"] == "ProjectNotExist"
    assert response.headers["x-log-requestid"]


def test_handler_exception_answers_500_and_server_survives(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: object) -> Any:
        raise RuntimeError("kaboom")

    services = dict(server_module._SERVICES)
    for name, service in services.items():
        services[name] = replace(service, handle=boom)
    monkeypatch.setattr(server_module, "_SERVICES", services)
    conn = connect(emulator)
    status, headers, body = exchange(conn, sls_beat(emulator))
    assert status == 500 and json.loads(body)["errorCode"] == "InternalServerError"
    assert headers["x-log-requestid"]
    status, _, body = exchange(conn, cls_beat(emulator))
    assert status == 200 and json.loads(body)["Response"]["Error"]["Code"] == "InternalError"
    assert caplog.text.count("RuntimeError: kaboom") == 2
    monkeypatch.undo()
    assert exchange(conn, sls_beat(emulator))[0] == 200


def test_oversized_and_chunked_bodies_are_refused(emulator: EmulatorServer) -> None:
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=5) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: demo-project.x\r\nContent-Length: 2000000\r\n\r\n")
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 413 ")
        assert b"PostBodyTooLarge" in reply and b"Connection: close" in reply
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-TC-Action: A\r\nTransfer-Encoding: chunked\r\n\r\n")
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 411 ")


# -- admin API


def test_admin_state_log_clock_and_reset(emulator: EmulatorServer) -> None:
    conn = connect(emulator)
    exchange(conn, sls_beat(emulator, "c1"))
    exchange(conn, sls_beat(emulator, "c2"))
    status, state = admin(emulator, "GET", "/_admin/state")
    assert status == 200
    group = next(g for g in state["groups"] if g["service"] == "sls" and g["group"] == "demo-group")
    assert group["scope"] == "demo-project/demo-logstore" and group["timeout"] == 6
    consumers = {c["name"]: c for c in group["consumers"]}
    assert consumers["c1"]["assigned"] == {"demo-logstore": [0, 1]} and consumers["c2"]["assigned"] == {}
    assert 0 <= consumers["c1"]["last_heartbeat_age"] < 5
    assert [s["state"] for s in group["shards"]] == ["already_alloc", "already_alloc", "transfer", "transfer"]
    assert group["shards"][3] == {"topic": "demo-logstore", "shard": 3, "state": "transfer", "owner": "c1",
                                  "next": "c2"}  # fmt: skip
    assert {g["scope"] for g in state["groups"] if g["service"] == "cls"} == {"demo-logset"}

    status, log = admin(emulator, "GET", "/_admin/log")
    assert log["next"] == 2 and [r["consumer"] for r in log["receipts"]] == ["c1", "c2"]
    assert admin(emulator, "GET", "/_admin/log?since=1")[1]["receipts"][0]["seq"] == 1
    assert admin(emulator, "GET", "/_admin/log?since=x")[0] == 400

    status, clock = admin(emulator, "POST", "/_admin/clock", {"advance": 6})
    assert status == 200 and clock["advance"] == 6
    state = admin(emulator, "GET", "/_admin/state")[1]
    assert next(g for g in state["groups"] if g["service"] == "sls")["consumers"] == []
    assert admin(emulator, "POST", "/_admin/clock", {"advance": -1})[0] == 400
    assert admin(emulator, "POST", "/_admin/clock", {"other": 1})[0] == 400

    assert admin(emulator, "POST", "/_admin/reset", {}) == (200, {"reset": True})
    assert admin(emulator, "GET", "/_admin/log")[1] == {"next": 2, "receipts": []}
    assert admin(emulator, "GET", "/_admin/state")[1]["clock"]["advance"] == 0


def test_admin_errors(emulator: EmulatorServer) -> None:
    assert admin(emulator, "GET", "/_admin/nothing")[0] == 404
    status, doc = admin(emulator, "GET", "/_admin/reset")
    assert status == 405 and "POST" in doc["error"]
    assert admin(emulator, "POST", "/_admin/faults", {"effect": "explode"})[0] == 400
    assert admin(emulator, "POST", "/_admin/faults", {"effect": "delay"})[0] == 400
    assert admin(emulator, "POST", "/_admin/faults", {"effect": "status", "typo": 1})[0] == 400


# -- faults


def test_status_fault_with_count(emulator: EmulatorServer) -> None:
    status, doc = admin(emulator, "POST", "/_admin/faults",
                        {"effect": "status", "status": 503, "count": 1, "action": "heartbeat"})  # fmt: skip
    assert status == 200 and doc["rules"][0]["id"] >= 1
    conn = connect(emulator)
    status, headers, body = exchange(conn, sls_beat(emulator))
    assert status == 503 and json.loads(body)["errorCode"] == "ServerBusy" and headers["x-log-requestid"]
    assert exchange(conn, sls_beat(emulator))[0] == 200
    receipts = admin(emulator, "GET", "/_admin/log")[1]["receipts"]
    assert [(r["status"], r["error"], r["fault"]) for r in receipts] == [
        (503, "ServerBusy", "status"),
        (200, None, None),
    ]


def test_cls_status_faults(emulator: EmulatorServer) -> None:
    admin(emulator, "POST", "/_admin/faults", {"rules": [
        {"effect": "status", "error_code": "InternalError", "count": 1, "service": "cls"},
        {"effect": "status", "status": 502, "count": 1, "service": "cls"},
    ]})  # fmt: skip
    conn = connect(emulator)
    status, headers, body = exchange(conn, cls_beat(emulator))
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert json.loads(body)["Response"]["Error"]["Code"] == "InternalError"
    assert exchange(conn, cls_beat(emulator))[0] == 502
    assert exchange(conn, cls_beat(emulator))[0] == 200


def test_fault_matches_consumer_group_and_expires_with_the_clock(emulator: EmulatorServer) -> None:
    rule = {"effect": "status", "status": 500, "consumer": "c2", "group": "demo-group", "duration": 10}
    admin(emulator, "POST", "/_admin/faults", rule)
    conn = connect(emulator)
    assert exchange(conn, sls_beat(emulator, "c1"))[0] == 200
    assert exchange(conn, sls_beat(emulator, "c2"))[0] == 500
    assert admin(emulator, "GET", "/_admin/faults")[1]["rules"][0]["hits"] == 1
    admin(emulator, "POST", "/_admin/clock", {"advance": 10})
    assert exchange(conn, sls_beat(emulator, "c2"))[0] == 200
    assert admin(emulator, "GET", "/_admin/faults")[1] == {"rules": []}


def test_delay_fault(emulator: EmulatorServer) -> None:
    admin(emulator, "POST", "/_admin/faults", {"effect": "delay", "seconds": 0.3, "count": 1})
    conn = connect(emulator)
    started = time.monotonic()
    assert exchange(conn, sls_beat(emulator))[0] == 200
    assert time.monotonic() - started >= 0.3


def test_hang_fault_holds_until_cleared(emulator: EmulatorServer) -> None:
    admin(emulator, "POST", "/_admin/faults", {"effect": "hang", "consumer": "stuck"})
    conn = connect(emulator, timeout=0.3)
    with pytest.raises(TimeoutError):
        exchange(conn, sls_beat(emulator, "stuck"))
    conn.close()
    other = connect(emulator, timeout=3)
    results: list[BaseException | int] = []

    def hung_call() -> None:
        try:
            results.append(exchange(other, sls_beat(emulator, "stuck"))[0])
        except BaseException as exc:
            results.append(exc)

    thread = threading.Thread(target=hung_call)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive()
    assert admin(emulator, "DELETE", "/_admin/faults")[1]["cleared"] == 1
    thread.join(2)
    assert not thread.is_alive()
    assert isinstance(results[0], http.client.RemoteDisconnected)


def test_reset_fault_sends_rst(emulator: EmulatorServer) -> None:
    admin(emulator, "POST", "/_admin/faults", {"effect": "reset", "count": 1})
    conn = connect(emulator)
    with pytest.raises(ConnectionResetError):
        exchange(conn, sls_beat(emulator))
    conn.close()
    assert exchange(connect(emulator), sls_beat(emulator))[0] == 200


def test_drop_fault_processes_but_never_answers(emulator: EmulatorServer) -> None:
    admin(emulator, "POST", "/_admin/faults", {"effect": "drop", "count": 1})
    conn = connect(emulator)
    with pytest.raises(http.client.RemoteDisconnected):
        exchange(conn, sls_beat(emulator, "c1"))
    receipts = admin(emulator, "GET", "/_admin/log")[1]["receipts"]
    assert [(r["consumer"], r["assigned"], r["fault"]) for r in receipts] == [
        ("c1", {"demo-logstore": [0, 1, 2, 3]}, "drop")
    ]
    state = admin(emulator, "GET", "/_admin/state")[1]
    assert [c["name"] for c in state["groups"][0]["consumers"]] == ["c1"]


def raw_answer(emulator: EmulatorServer, request: HttpRequest, timeout: float = 5.0) -> bytes:
    """The answer's bytes exactly as sent, read to the close."""
    head = f"{request.method} {request.target} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in request.headers
    )
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + request.body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("service", ["sls", "cls"])
def test_misbehaviour_faults_on_the_wire(emulator: EmulatorServer, service: str) -> None:
    beat = sls_beat if service == "sls" else cls_beat
    admin(emulator, "POST", "/_admin/faults", {"rules": [
        {"effect": "oversized", "bytes": 3 << 20, "count": 1},
        {"effect": "malformed", "count": 1},
        {"effect": "html200", "count": 1},
        {"effect": "redirect", "location": "http://127.0.0.1:9/x", "count": 1},
        {"effect": "http10", "count": 1},
    ]})  # fmt: skip
    conn = connect(emulator)
    status, headers, body = exchange(conn, beat(emulator))
    assert status == 200 and len(body) == 3 << 20 and body[:1] in (b"[", b"{")
    status, headers, body = exchange(conn, beat(emulator))
    assert status == 200 and headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(body)
    status, headers, body = exchange(conn, beat(emulator))
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"<html>" in body
    status, headers, body = exchange(conn, beat(emulator))
    assert status == 302 and headers["Location"] == "http://127.0.0.1:9/x"
    wire = raw_answer(emulator, beat(emulator))
    assert wire.startswith(b"HTTP/1.0 200 ") and b"Connection: close" in wire
    receipts = admin(emulator, "GET", "/_admin/log")[1]["receipts"]
    assert [(r["fault"], r["status"], r["assigned"] is not None) for r in receipts] == [
        ("oversized", 200, False),
        ("malformed", 200, False),
        ("html200", 200, False),
        ("redirect", 302, False),
        ("http10", 200, True),  # processed: the state moved
    ]


def test_trickle_fault_writes_the_answer_a_byte_at_a_time(emulator: EmulatorServer) -> None:
    admin(emulator, "POST", "/_admin/faults", {"effect": "trickle", "seconds": 0.002, "count": 1})
    started = time.monotonic()
    wire = raw_answer(emulator, sls_beat(emulator))
    took = time.monotonic() - started
    assert wire.startswith(b"HTTP/1.1 200 ") and wire.endswith(b"[0,1,2,3]")
    assert took >= 0.002 * len(wire) * 0.9
    receipts = admin(emulator, "GET", "/_admin/log")[1]["receipts"]
    assert receipts[-1]["fault"] == "trickle" and receipts[-1]["assigned"] is not None


def test_misbehaviour_rule_arguments_are_checked(emulator: EmulatorServer) -> None:
    for rule in (
        {"effect": "oversized", "bytes": 0},
        {"effect": "oversized", "bytes": 1 << 40},
        {"effect": "redirect", "location": "http://x/\r\nSet-Cookie: a"},
        {"effect": "trickle", "seconds": -1},
        {"effect": "trickle", "seconds": 5},
        {"effect": "redirect", "location": "http://h\u00e9/"},
    ):
        status, doc = admin(emulator, "POST", "/_admin/faults", rule)
        assert status == 400, (rule, doc)


# -- stopping


def test_stop_closes_idle_keep_alive_connections_promptly() -> None:
    server = EmulatorServer(None).start()
    conn = connect(server)
    exchange(conn, sls_beat(server))
    hanging = connect(server, timeout=5)
    admin(server, "POST", "/_admin/faults", {"effect": "hang", "consumer": "h"})
    thread = threading.Thread(target=lambda: _swallow(lambda: exchange(hanging, sls_beat(server, "h"))))
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.5
    thread.join(2)
    assert not thread.is_alive()
    assert conn.sock is not None and conn.sock.recv(1) == b""  # the idle connection was closed
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    server.stop()  # idempotent


def _swallow(action: Any) -> None:
    with contextlib.suppress(OSError, http.client.HTTPException):
        action()


def test_port_in_use_is_an_os_error(emulator: EmulatorServer) -> None:
    with pytest.raises(OSError):
        EmulatorServer(None, port=emulator.port)


# -- the command line


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugin")}
    return subprocess.Popen(
        [sys.executable, "-m", "shardbeat.emulator.server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_announces_serves_and_stops_on_signal(signum: int) -> None:
    process = _spawn("--port", "0", "--quiet")  # the description it prints otherwise: test_emulator_describe
    try:
        assert process.stderr is not None
        line = process.stderr.readline().strip()
        assert line.startswith("shardbeat emulator listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/_admin/state")
        assert conn.getresponse().status == 200
        conn.close()
        process.send_signal(signum)
        assert process.wait(timeout=5) == 0
        out, err = process.communicate(timeout=5)
        assert out == "" and err == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_bad_fixtures_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"sls": {"projects": []}}')
    process = _spawn("--fixtures", str(bad), "--port", "0")
    out, err = process.communicate(timeout=10)
    assert process.returncode == 2
    assert out == ""
    assert (
        err.strip()
        == f"shardbeat emulator: bad fixtures: {bad}: sls.projects: must be an object, not an array"
    )


def test_cli_busy_port_exit_1(emulator: EmulatorServer) -> None:
    process = _spawn("--port", str(emulator.port))
    _, err = process.communicate(timeout=10)
    assert process.returncode == 1 and "cannot listen on 127.0.0.1:" in err


def test_main_in_process_with_bad_fixtures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert server_module.main(["--fixtures", str(tmp_path / "missing.json")]) == 2
    assert "cannot read fixtures file" in capsys.readouterr().err


def test_sls_service_key_is_what_dispatch_uses() -> None:
    assert SLS in server_module._SERVICES


def test_protocol_errors_get_the_sls_error_shape(emulator: EmulatorServer) -> None:
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        reply = sock.recv(65536)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"\r\nx-log-requestid: " in head
    assert json.loads(body)["errorCode"] == "BadRequest"
    conn = connect(emulator)
    conn.request("HEAD", "/")
    response = conn.getresponse()
    assert response.status == 501 and response.headers["x-log-requestid"]
    assert exchange(connect(emulator), sls_beat(emulator))[0] == 200


def test_admin_failure_answers_500_json(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Any:
        raise RuntimeError("state is broken")

    monkeypatch.setattr(emulator.world, "state_json", broken)
    status, doc = admin(emulator, "GET", "/_admin/state")
    assert status == 500 and "internal error" in doc["error"]
    assert "state is broken" in caplog.text


def test_demo_config_points_at_the_emulator(emulator: EmulatorServer) -> None:
    config = emulator.demo_config("sls")
    assert config["endpoint"] == emulator.url == f"http://127.0.0.1:{emulator.port}"
    assert config["project"] == "demo-project" and config["consumer"] == "demo-consumer"
    config["credentials"]["access_key_id"] = "changed"
    assert emulator.world.fixtures.demo["sls"]["credentials"]["access_key_id"] == "emulator-akid"
    assert emulator.demo_config("cls")["topics"] == ["demo-topic-a", "demo-topic-b"]
    with pytest.raises(KeyError):
        emulator.demo_config("kafka")


@pytest.mark.parametrize("cls_request", [False, True])
def test_post_without_content_length_is_refused_not_misread(
    emulator: EmulatorServer, cls_request: bool
) -> None:
    action = b"X-TC-Action: SendConsumerHeartbeat\r\n" if cls_request else b""
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: demo-project.x\r\n" + action + b"\r\n{}")
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 411 ") and b"Connection: close" in reply
        code = json.loads(reply.partition(b"\r\n\r\n")[2])
        assert (code["Response"]["Error"]["Code"] if cls_request else code["errorCode"]) == (
            "MissingParameter" if cls_request else "MissingContentLength"
        )
        assert sock.recv(65536) == b""  # closed: the unread body is never taken for a request


def test_admin_post_without_content_length_is_fine(emulator: EmulatorServer) -> None:
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=5) as sock:
        sock.sendall(b"POST /_admin/reset HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b'{"reset": true}')
