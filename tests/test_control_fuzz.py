"""Hostile peers of the control channel: replies always follow reply.schema.json, and
`shardbeat status`/`stop` against a socket that is not a healthy shardbeat end in a clear
error within the timeout, never a traceback or a hang."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest

from shardbeat.config import ControlConfig
from shardbeat.runtime import control_channels, control_replies
from shardbeat.runtime.control_channels import start_control
from shardbeat.runtime.status_client import run_status, run_stop
from shardbeat.schemas import load_schema

REPLY = jsonschema.Draft202012Validator(load_schema("reply"))


@pytest.mark.parametrize(
    "reply",
    [
        control_replies.done("commit"),
        control_replies.failed("commit", "UnknownGroup", "commit: no configured group matches group g"),
    ],
)
def test_commit_replies_follow_the_reply_schema(reply: dict[str, object]) -> None:
    REPLY.validate(reply)


Serve = Callable[[socket.socket], None]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Callable[[Serve], str]]:
    """A Unix socket at a short path whose one connection is answered by `serve`."""
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def start(serve: Serve) -> str:
        path = str(tmp_path / "s.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listeners.append(listener)

        def run() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                with contextlib.suppress(OSError):
                    serve(conn)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return path

    yield start
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(5)


def _answer(data: bytes) -> Serve:
    return lambda conn: conn.sendall(data)


def _trickle(conn: socket.socket) -> None:
    for _ in range(20):  # a byte every 0.2 s for 4 s: each read succeeds, the whole never ends
        conn.sendall(b" ")
        time.sleep(0.2)


STATUS_GROUP = (
    b'{"provider":"sls","group":"g","consumer":"c","time":"t","epoch":1,"assigned":{},"releasing":{},'
    b'"lease_expires":null,"lease_remaining_ms":null,"last_error":null,"scope":"p/l","failing":false,'
    b'"last_failure":null,"last_latency_ms":null,"counters":%s}'
)


@pytest.mark.parametrize(
    ("serve", "said"),
    [
        (_answer(b"[" * 100_000 + b"\n"), "not JSON"),
        (_answer(b'{"ok": false, "error": "boom"}\n'), "not a shardbeat reply"),
        (_answer(b'{"ok": false, "error": [1]}\n'), "not a shardbeat reply"),
        (_answer(b'{"ok": true, "op": "status", "groups": [{"group": 5}]}\n'), "not a shardbeat"),
        (_answer(b'{"ok": true, "op": "status", "groups": [' + STATUS_GROUP % b"7" + b"]}\n"), "cannot show"),
        (_trickle, "no answer within 1s"),
    ],
    ids=["deep", "error-string", "error-list", "bad-groups", "odd-counters", "trickle"],
)
def test_status_against_a_hostile_socket_is_a_clear_error_in_time(
    fake: Callable[[Serve], str], serve: Serve, said: str
) -> None:
    path = fake(serve)
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    assert run_status(path, as_json=False, watch=None, timeout=1.0, out=out, err=err) == 1
    assert time.monotonic() - started < 3.0
    assert said in err.getvalue() and path in err.getvalue()
    assert out.getvalue() == ""


def test_stop_against_a_trickling_socket_ends_in_time(fake: Callable[[Serve], str]) -> None:
    path = fake(_trickle)
    err = io.StringIO()
    started = time.monotonic()
    assert run_stop(path, timeout=1.0, err=err) == 1
    assert time.monotonic() - started < 3.0
    assert "no answer within 1s" in err.getvalue()


class _Sink:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def control(self, message: object, reply: object = None) -> None: ...

    def control_error(self, source: str, code: str, message: str) -> None:
        with self.lock:
            self.errors.append(message)

    def control_eof(self) -> None: ...


def test_reconnecting_for_every_bad_message_gets_no_fresh_report_budget(tmp_path: Path) -> None:
    """The socket's problem reports share one budget: a client that opens a new connection for
    each bad line floods neither the record stream nor the log (each still gets its reply)."""
    sink = _Sink()
    path = str(tmp_path / "c.sock")
    channels = start_control(sink, ControlConfig(socket=path, stdin="off"))
    try:
        clients = 3 * control_channels.REPORT_BURST
        for _ in range(clients):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(5)
                conn.connect(path)
                conn.sendall(b"garbage\n")
                conn.shutdown(socket.SHUT_WR)
                assert b'"InvalidJson"' in conn.recv(4096)  # every client hears of its problem
    finally:
        channels.close()
    # The burst, plus at most one a second of the time the loop took.
    assert len(sink.errors) <= control_channels.REPORT_BURST + 3


class _Runner:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def select(self, group: object, provider: object, consumer: object) -> list[object]:
        return []

    def control_error(self, code: str, message: str) -> None:
        self.errors.append(f"{code}: {message}")


def test_a_flood_of_ops_naming_no_group_is_rate_limited_but_every_one_is_answered() -> None:
    from typing import Any, cast

    from shardbeat.runtime.control import ControlMessage
    from shardbeat.runtime.process import ControlHandler

    runner = _Runner()
    handler = ControlHandler(cast(Any, runner), cast(Any, None), None)
    replies: list[dict[str, Any]] = []
    for _ in range(5 * control_channels.REPORT_BURST):
        handler.control(ControlMessage("heartbeat", group="nope"), reply=replies.append)
    assert len(replies) == 5 * control_channels.REPORT_BURST
    assert all(r["error"]["code"] == "UnknownGroup" for r in replies)
    assert control_channels.REPORT_BURST <= len(runner.errors) <= control_channels.REPORT_BURST + 1
    assert runner.errors[0] == "UnknownGroup: heartbeat: no configured group matches group nope"


@pytest.mark.parametrize(
    ("doc", "said"),
    [
        ({"op": "commit", "group": "g", "checkpoints": {"t": {"0": "c"}}, "epoch": -1}, "epoch must be >= 0"),
        ({"op": "commit", "group": "g", "checkpoints": {"t": {-1: "c"}}}, "integers, not -1"),
    ],
)
def test_a_negative_number_is_named_as_negative_not_as_a_wrong_kind(
    doc: dict[str, object], said: str
) -> None:
    from shardbeat.runtime.control import ControlProblem, message_from

    problem = message_from(doc)
    assert isinstance(problem, ControlProblem)
    assert (
        said in problem.message
        and "not an integer" not in problem.message
        and "not int" not in problem.message
    )


class _CommitRunner(_Runner):
    def __init__(self, queued: int) -> None:
        super().__init__()
        self.queued = queued

    def select(self, group: object, provider: object, consumer: object) -> list[object]:
        return [object()]

    def commit(self, targets: object, values: object, epoch: object) -> int:
        return self.queued


@pytest.mark.parametrize(("queued", "ok"), [(0, False), (1, True)])
def test_a_commit_of_which_nothing_was_queued_is_not_acknowledged(queued: int, ok: bool) -> None:
    """A non-owner's commit must not hear "ok": nothing of it will ever be sent."""
    from typing import Any, cast

    from shardbeat.runtime.control import ControlMessage
    from shardbeat.runtime.process import ControlHandler

    handler = ControlHandler(cast(Any, _CommitRunner(queued)), cast(Any, None), None)
    replies: list[dict[str, Any]] = []
    handler.control(ControlMessage("commit", group="g", checkpoints={("t", 9): "c"}), reply=replies.append)
    [reply] = replies
    REPLY.validate(reply)
    assert reply["ok"] is ok
    if not ok:
        assert reply["error"]["code"] == "NothingCommitted"


def test_status_waits_for_room_in_a_full_backlog(tmp_path: Path) -> None:
    """A listener whose backlog is full (a burst of clients) makes a Unix connect() with a timeout
    fail at once with EAGAIN; status waits for room within its timeout instead."""
    path = str(tmp_path / "b.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    fillers = []
    for _ in range(8):  # more than any backlog of 0 admits
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(path)
        fillers.append(filler)

    def serve() -> None:
        time.sleep(0.3)  # the backlog stays full for a while, then the server catches up
        for _ in range(len(fillers) + 1):
            conn, _ = listener.accept()
            if conn.recv(1024):
                conn.sendall(b'{"op": "status", "ok": true, "groups": []}\n')
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    for filler in fillers:
        filler.close()
    out, err = io.StringIO(), io.StringIO()
    try:
        assert run_status(path, as_json=True, watch=None, timeout=3.0, out=out, err=err) == 0, err.getvalue()
        assert out.getvalue() == '{"groups":[]}\n'
    finally:
        listener.close()


def test_an_unencodable_control_string_is_described_clearly_without_the_character() -> None:
    """A lone surrogate from a control message makes a record unencodable; the warning says why
    (codec, position, reason), not '[redacted] codec can[redacted]...', and shows no input."""
    from shardbeat.core.redaction import describe_exception

    try:
        "group \ud800".encode()
    except UnicodeEncodeError as exc:
        text = describe_exception(exc)
    assert text == "UnicodeEncodeError: utf-8 cannot encode position 6: surrogates not allowed"
    try:
        b"\xff".decode()
    except UnicodeDecodeError as exc:
        text = describe_exception(exc)
    assert text == "UnicodeDecodeError: utf-8 cannot decode position 0: invalid start byte"


def test_c1_and_bidi_controls_from_a_control_client_are_escaped_in_logs_and_the_text_view() -> None:
    """A group name like '\\x9b31m' (8-bit CSI) or '\\u202e' (right-to-left override) comes back in
    the UnknownGroup warning and error record: neither may drive the terminal or reorder a line."""
    from shardbeat.runtime.logs import _one_line
    from shardbeat.views.text_records import clean

    hostile = "g\x9b31m\u202eevil\u2066x\u00e9"
    assert _one_line(hostile) == "g\\x9b31m\\u202eevil\\u2066x\u00e9"
    assert clean(hostile) == "g\\x9b31m\\u202eevil\\u2066x\u00e9"
