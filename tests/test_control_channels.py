"""Control channel readers: stdin of every kind (and the TTY refused), the Unix socket server."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from harness import wait_for
from shardbeat.config import ControlConfig
from shardbeat.runtime import control_channels, control_outbox, control_socket
from shardbeat.runtime.control import ControlMessage, Reply
from shardbeat.runtime.control_channels import Feed, start_control, start_stdin_reader, stdin_kind
from shardbeat.runtime.control_socket import ControlSocketError, ControlSocketServer

WAIT = 5.0


class Sink:
    """Collects what the readers deliver; thread-safe; can be told to fail."""

    def __init__(self) -> None:
        self.messages: list[ControlMessage] = []
        self.errors: list[tuple[str, str, str]] = []
        self.eofs = 0
        self.fail_on: str | None = None
        self.pad = 0  # bytes of padding in each reply
        self._cond = threading.Condition()

    def control(self, message: ControlMessage, reply: Reply | None = None) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()
        if message.op == self.fail_on:
            raise RuntimeError("sink bug")
        if reply is not None:
            reply({"op": message.op, "ok": True, "group": message.group, "pad": "x" * self.pad})

    def control_error(self, source: str, code: str, message: str) -> None:
        with self._cond:
            self.errors.append((source, code, message))
            self._cond.notify_all()

    def control_eof(self) -> None:
        with self._cond:
            self.eofs += 1
            self._cond.notify_all()

    def wait(self, pred: Callable[[Sink], bool], timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: pred(self), timeout)

    def ops(self) -> list[str]:
        with self._cond:
            return [m.op for m in self.messages]


def line(doc: Any) -> bytes:
    return (json.dumps(doc) + "\n").encode()


def packed(doc: Any) -> bytes:
    data: bytes = msgpack.packb(doc, use_bin_type=True)
    return data


AUTO = ControlConfig()


# -- what stdin is ------------------------------------------------------------------------------------


def test_stdin_kind_tells_readable_kinds_from_terminals_devices_and_closed() -> None:
    r, w = os.pipe()
    a, b = socket.socketpair()
    primary, secondary = os.openpty()
    null = os.open(os.devnull, os.O_RDONLY)
    closed = os.open(os.devnull, os.O_RDONLY)
    os.close(closed)
    try:
        with open(__file__, "rb") as f:
            assert stdin_kind(f.fileno()) == (True, "a file")
        assert stdin_kind(r) == (True, "a pipe")
        assert stdin_kind(a.fileno()) == (True, "a socket")
        assert stdin_kind(secondary) == (False, "a terminal")
        assert stdin_kind(null) == (False, "a character device")
        assert stdin_kind(closed) == (False, "closed")
    finally:
        for fd in (r, w, primary, secondary, null):
            os.close(fd)
        a.close()
        b.close()


def test_a_terminal_stdin_is_never_read(caplog: pytest.LogCaptureFixture) -> None:
    primary, secondary = os.openpty()
    try:
        sink = Sink()
        with caplog.at_level("INFO", "shardbeat.control"):
            assert start_stdin_reader(sink, ControlConfig(exit_on_stdin_eof=True), secondary) is None
        assert "stdin is a terminal" in caplog.text and "no effect" in caplog.text
        os.write(primary, b'{"op": "stop"}\n')
        time.sleep(0.1)
        assert sink.messages == [] and sink.eofs == 0
        assert not [t for t in threading.enumerate() if t.name == "shardbeat-control-stdin"]
    finally:
        os.close(primary)
        os.close(secondary)


def test_stdin_off_reads_nothing_even_from_a_pipe() -> None:
    r, w = os.pipe()
    try:
        assert start_stdin_reader(Sink(), ControlConfig(stdin="off"), r) is None
    finally:
        os.close(r)
        os.close(w)


# -- reading each kind -------------------------------------------------------------------------------


@contextlib.contextmanager
def piped_reader(sink: Sink) -> Iterator[int]:
    """A reader on a fresh pipe; yields the write end. The reader sees EOF and ends before the read
    end is closed, so it can never read from a later test's pipe that reuses the descriptor."""
    r, w = os.pipe()
    reader = start_stdin_reader(sink, AUTO, r)
    assert reader is not None
    try:
        yield w
    finally:
        with contextlib.suppress(OSError):
            os.close(w)
        reader.thread.join(WAIT)
        os.close(r)


def test_pipe_json_lines_then_eof() -> None:
    r, w = os.pipe()
    sink = Sink()
    reader = start_stdin_reader(sink, AUTO, r)
    assert reader is not None
    try:
        os.write(w, line({"op": "status"}) + b'{"op": "heart')
        assert sink.wait(lambda s: s.ops() == ["status"])
        os.write(w, b'beat", "group": "g"}\n')
        assert sink.wait(lambda s: s.ops() == ["status", "heartbeat"])
        assert sink.messages[1].group == "g"
        assert sink.eofs == 0
        os.close(w)
        assert sink.wait(lambda s: s.eofs == 1)
        reader.thread.join(WAIT)
        assert not reader.thread.is_alive()
    finally:
        os.close(r)


def test_pipe_msgpack_stream() -> None:
    sink = Sink()
    with piped_reader(sink) as w:
        os.write(w, packed({"op": "released", "group": "g", "shards": {"ls": [1]}}))
        os.write(w, packed({"op": "reload"}))
        assert sink.wait(lambda s: s.ops() == ["released", "reload"])
        assert sink.messages[0].shards == {"ls": frozenset({1})}
        os.close(w)
        assert sink.wait(lambda s: s.eofs == 1)


def test_fifo(tmp_path: Path) -> None:
    path = tmp_path / "control.fifo"
    os.mkfifo(path)
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a host would have it opened already
    w = os.open(path, os.O_WRONLY)
    os.set_blocking(r, True)
    sink = Sink()
    assert stdin_kind(r) == (True, "a pipe")
    start_stdin_reader(sink, AUTO, r)
    try:
        os.write(w, line({"op": "heartbeat"}))
        assert sink.wait(lambda s: s.ops() == ["heartbeat"])
        os.close(w)
        assert sink.wait(lambda s: s.eofs == 1)
    finally:
        os.close(r)


def test_regular_file_is_read_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "commands.jsonl"
    path.write_bytes(line({"op": "status"}) + b"junk\n" + line({"op": "stop"}))
    sink = Sink()
    with open(path, "rb") as f:
        start_stdin_reader(sink, AUTO, f.fileno())
        assert sink.wait(lambda s: s.eofs == 1)
    assert sink.ops() == ["status", "stop"]
    assert [(src, code) for src, code, _ in sink.errors] == [("stdin", "InvalidJson")]


def test_socket_stdin() -> None:
    ours, theirs = socket.socketpair()
    sink = Sink()
    start_stdin_reader(sink, AUTO, ours.fileno())
    try:
        theirs.sendall(line({"op": "status"}))
        assert sink.wait(lambda s: s.ops() == ["status"])
        theirs.shutdown(socket.SHUT_WR)
        assert sink.wait(lambda s: s.eofs == 1)
    finally:
        ours.close()
        theirs.close()


def test_garbage_on_stdin_is_survived_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    with piped_reader(sink) as w:
        with caplog.at_level("DEBUG", "shardbeat.control"):
            os.write(
                w,
                b"\x00\xff garbage\n" + b"x" * 200_000 + b"\n" + line({"op": "nope"}) + line({"op": "stop"}),
            )
            assert sink.wait(lambda s: s.ops() == ["stop"])
        assert [code for _, code, _ in sink.errors] == ["InvalidEncoding", "MessageTooLarge", "UnknownOp"]
        assert caplog.text.count("bad control message from stdin") == 3


def test_a_failing_sink_does_not_end_the_reader(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    sink.fail_on = "status"
    with piped_reader(sink) as w:
        os.write(w, line({"op": "status"}) + line({"op": "reload"}))
        assert sink.wait(lambda s: s.ops() == ["status", "reload"])
        assert "internal error handling a control message from stdin" in caplog.text


def test_a_closed_reader_delivers_nothing_more() -> None:
    r, w = os.pipe()
    sink = Sink()
    reader = start_stdin_reader(sink, AUTO, r)
    assert reader is not None
    try:
        os.write(w, line({"op": "status"}))
        assert sink.wait(lambda s: len(s.messages) == 1)
        reader.close()
        os.write(w, line({"op": "stop"}))
        os.close(w)
        reader.thread.join(WAIT)
        assert sink.ops() == ["status"] and sink.eofs == 0
    finally:
        os.close(r)


def test_problem_reports_are_rate_limited_per_source_and_the_rest_counted() -> None:
    now = [100.0]
    sink = Sink()
    feed = Feed(sink, "socket", clock=lambda: now[0])
    feed.data(b"bad\n" * (control_channels.REPORT_BURST + 5))
    assert len(sink.errors) == control_channels.REPORT_BURST
    now[0] += control_channels.REPORT_EVERY
    feed.data(b"bad\n")
    assert len(sink.errors) == control_channels.REPORT_BURST + 1
    assert "(5 more bad control messages from socket not reported)" in sink.errors[-1][2]
    feed.data(line({"op": "status"}))
    assert sink.ops() == ["status"]  # messages are never rate limited


# -- the socket ---------------------------------------------------------------------------------------


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "ctl.sock"


@contextlib.contextmanager
def serving(path: Path, sink: Sink, **kw: Any) -> Iterator[ControlSocketServer]:
    server = ControlSocketServer(str(path), lambda: Feed(sink, "socket"), **kw).start()
    try:
        yield server
    finally:
        server.close()


def client(path: Path) -> socket.socket:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(str(path))
    return c


def test_socket_mode_is_0600_whatever_the_umask(sock_path: Path) -> None:
    old = os.umask(0)
    try:
        with serving(sock_path, Sink()):
            mode = os.stat(sock_path).st_mode
            assert stat.S_ISSOCK(mode)
            assert stat.S_IMODE(mode) == 0o600
    finally:
        os.umask(old)


def test_several_clients_at_once_each_with_its_own_stream(sock_path: Path) -> None:
    sink = Sink()
    with serving(sock_path, sink) as server:
        a, b, c = client(sock_path), client(sock_path), client(sock_path)
        try:
            a.sendall(b'{"op": "heartbeat", "gr')  # half a line: must not mix with b's bytes
            b.sendall(packed({"op": "status"}))  # this client speaks MessagePack
            assert sink.wait(lambda s: s.ops() == ["status"])
            c.sendall(b"garbage\n")
            assert sink.wait(lambda s: len(s.errors) == 1)
            a.sendall(b'oup": "g"}\n')
            assert sink.wait(lambda s: s.ops() == ["status", "heartbeat"])
            assert sink.messages[1] == ControlMessage("heartbeat", "g")
            c.sendall(line({"op": "reload"}))  # the garbage client carries on too
            assert sink.wait(lambda s: s.ops()[-1:] == ["reload"])
            assert wait_for(lambda: server.clients == 3, WAIT)
        finally:
            for s in (a, b, c):
                s.close()
        assert wait_for(lambda: server.clients == 0, WAIT)
    assert sink.errors == [("socket", "InvalidJson", sink.errors[0][2])]
    assert sink.eofs == 0  # a socket client going away is not the end of stdin


def test_a_client_may_write_without_a_final_newline_and_close(sock_path: Path) -> None:
    sink = Sink()
    with serving(sock_path, sink):
        with client(sock_path) as c:
            c.sendall(b'{"op": "stop"}')
        assert sink.wait(lambda s: s.ops() == ["stop"])


def read_json_lines(c: socket.socket, n: int) -> list[dict[str, Any]]:
    c.settimeout(WAIT)
    data = b""
    while data.count(b"\n") < n:
        chunk = c.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return [json.loads(x) for x in data.splitlines()]


def test_each_message_is_answered_on_its_own_connection_in_its_encoding(sock_path: Path) -> None:
    sink = Sink()
    with serving(sock_path, sink), client(sock_path) as a, client(sock_path) as b:
        a.sendall(line({"op": "status"}) + b"bad\n" + line({"op": "heartbeat", "group": "g"}))
        replies = read_json_lines(a, 3)
        assert replies[0] == {"op": "status", "ok": True, "group": None, "pad": ""}
        assert replies[1]["ok"] is False and replies[1]["error"]["code"] == "InvalidJson"
        assert replies[2]["op"] == "heartbeat" and replies[2]["group"] == "g"
        b.sendall(packed({"op": "reload"}))  # MessagePack in, MessagePack out
        b.settimeout(WAIT)
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(b.recv(65536))
        assert next(unpacker) == {"op": "reload", "ok": True, "group": None, "pad": ""}
        a.settimeout(0.2)  # ...and nothing of b's reached a
        with pytest.raises(TimeoutError):
            a.recv(1)


def test_a_client_that_half_closes_still_gets_its_replies(sock_path: Path) -> None:
    sink = Sink()
    sink.pad = 300_000  # more than one send() takes: the rest goes out as the client reads
    with serving(sock_path, sink) as server, client(sock_path) as c:
        c.sendall(line({"op": "status"}) + line({"op": "status"}))
        c.shutdown(socket.SHUT_WR)
        replies = read_json_lines(c, 2)
        assert [r["op"] for r in replies] == ["status", "status"]
        assert c.recv(1) == b""  # then the server closes
        assert wait_for(lambda: server.clients == 0, WAIT)


def test_a_client_that_never_reads_its_replies_is_disconnected(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(control_outbox, "MAX_PENDING", 1 << 20)
    sink = Sink()
    sink.pad = 100_000
    with serving(sock_path, sink) as server, client(sock_path) as hog, client(sock_path) as other:
        assert wait_for(lambda: server.clients == 2, WAIT)  # both accepted before the hog misbehaves
        hog.sendall(line({"op": "status"}) * 40)  # ~4 MB of replies it never reads
        assert wait_for(lambda: server.clients == 1, WAIT)
        assert "does not read its replies" in caplog.text
        other.sendall(line({"op": "reload"}))  # the server still serves everyone else
        assert read_json_lines(other, 1)[0]["op"] == "reload"


class GatedSink(Sink):
    """Holds the socket thread on the first message until `go` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.held = threading.Event()
        self.go = threading.Event()

    def control(self, message: ControlMessage, reply: Reply | None = None) -> None:
        if not self.held.is_set():
            self.held.set()
            self.go.wait(WAIT)
        super().control(message, reply)


def test_a_client_flooding_valid_ops_cannot_keep_another_waiting(sock_path: Path) -> None:
    """Each turn of the socket thread reads one piece of every ready client. A piece was 64 KiB,
    thousands of small ops each acted on (a status walks every group) before any other client was
    heard: an operator's `status` waited seconds behind one looping client. Pieces are small now."""
    sink = GatedSink()
    flood = line({"op": "heartbeat", "group": "f"}) * 6000  # ~200 KiB
    with serving(sock_path, sink), client(sock_path) as hog, client(sock_path) as operator:
        sender = threading.Thread(target=hog.sendall, args=(flood,), daemon=True)
        sender.start()
        assert sink.held.wait(WAIT)  # the socket thread has read the flood's first piece
        operator.sendall(line({"op": "status"}))
        sink.go.set()
        assert sink.wait(lambda s: "status" in s.ops())
        before = sink.ops().index("status")
        assert before < 1000, f"{before} of the flood's ops were acted on before the operator's"
        sender.join(WAIT)


def test_idle_clients_never_lock_a_newcomer_out(sock_path: Path) -> None:
    """32 silent clients used to fill every slot and every later client was refused. Now the client
    silent the longest makes room, so a newcomer (and any active client) is always served."""
    sink = Sink()
    with serving(sock_path, sink) as server:
        idle = [client(sock_path) for _ in range(control_socket.MAX_CLIENTS)]
        try:
            assert wait_for(lambda: server.clients == control_socket.MAX_CLIENTS, WAIT)
            for _ in range(3):
                with client(sock_path) as newcomer:
                    newcomer.sendall(line({"op": "status"}))
                    assert sink.wait(lambda s: len(s.ops()) >= 1)
            assert sink.wait(lambda s: s.ops() == ["status"] * 3)
            assert server.clients <= control_socket.MAX_CLIENTS
            idle[0].settimeout(WAIT)
            assert idle[0].recv(1) == b""  # the oldest silent one was closed to admit the first newcomer
        finally:
            for c in idle:
                c.close()


def test_the_most_silent_client_is_evicted_not_the_active_one(sock_path: Path) -> None:
    sink = Sink()
    with serving(sock_path, sink, max_clients=2) as server:
        a, b = client(sock_path), client(sock_path)
        try:
            assert wait_for(lambda: server.clients == 2, WAIT)
            a.sendall(b'{"op": "sta')  # a is active (mid-message); b has said nothing yet
            time.sleep(0.1)
            with client(sock_path) as extra:
                extra.sendall(line({"op": "reload"}))
                assert sink.wait(lambda s: s.ops() == ["reload"])
            b.settimeout(WAIT)
            assert b.recv(1) == b""  # closed by the server
            a.sendall(b'tus"}\n')
            assert sink.wait(lambda s: s.ops() == ["reload", "status"])
        finally:
            a.close()
            b.close()


def test_silent_clients_are_closed_after_the_idle_timeout(sock_path: Path) -> None:
    sink = Sink()
    with serving(sock_path, sink, idle_timeout=0.3) as server:
        with client(sock_path) as quiet, client(sock_path) as chatty:
            assert wait_for(lambda: server.clients == 2, WAIT)
            quiet.sendall(b'{"op": "status"}')  # no newline: delivered when the server gives up on it
            for _ in range(5):
                chatty.sendall(b" ")
                time.sleep(0.1)
            quiet.settimeout(WAIT)
            while quiet.recv(4096):  # the reply to its unfinished message may come first; then EOF
                pass  # (a timeout here raises: the connection was not closed)
            assert sink.wait(lambda s: s.ops() == ["status"])
            assert server.clients == 1  # the chatty one stays
            chatty.settimeout(WAIT)
            assert chatty.recv(1) == b""  # and goes once it falls silent too
        assert wait_for(lambda: server.clients == 0, WAIT)


def test_a_stale_socket_file_is_replaced(sock_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))  # bound, never listening: what a killed process leaves behind
    dead.close()
    assert sock_path.exists()
    sink = Sink()
    with caplog.at_level("INFO", "shardbeat.control"), serving(sock_path, sink), client(sock_path) as c:
        c.sendall(line({"op": "status"}))
        assert sink.wait(lambda s: s.ops() == ["status"])
    assert "removed a stale control socket" in caplog.text


def test_a_live_socket_is_refused_and_keeps_working(sock_path: Path) -> None:
    sink = Sink()
    with serving(sock_path, sink):
        with pytest.raises(ControlSocketError, match="another process is listening on control socket"):
            ControlSocketServer(str(sock_path), lambda: Feed(Sink(), "socket")).start()
        with client(sock_path) as c:
            c.sendall(line({"op": "status"}))
            assert sink.wait(lambda s: s.ops() == ["status"])


def test_a_path_that_is_not_a_socket_is_left_alone(sock_path: Path) -> None:
    sock_path.write_text("precious")
    with pytest.raises(ControlSocketError, match="exists and is not a socket"):
        ControlSocketServer(str(sock_path), lambda: Feed(Sink(), "socket")).start()
    assert sock_path.read_text() == "precious"


def test_a_path_too_long_or_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ControlSocketError, match="the limit is 107"):
        ControlSocketServer(str(tmp_path / ("s" * 120)), lambda: Feed(Sink(), "socket")).start()
    with pytest.raises(ControlSocketError, match=r"cannot create control socket .*No such file"):
        ControlSocketServer(str(tmp_path / "missing" / "s"), lambda: Feed(Sink(), "socket")).start()


def test_close_removes_the_file_disconnects_clients_and_is_idempotent(sock_path: Path) -> None:
    sink = Sink()
    server = ControlSocketServer(str(sock_path), lambda: Feed(sink, "socket")).start()
    c = client(sock_path)
    assert wait_for(lambda: server.clients == 1, WAIT)
    server.close()
    server.close()
    assert not sock_path.exists()
    c.settimeout(WAIT)
    assert c.recv(1) == b""
    c.close()
    assert not [t for t in threading.enumerate() if t.name == "shardbeat-control-socket" and t.is_alive()]


def test_close_leaves_a_socket_file_that_is_no_longer_ours(sock_path: Path) -> None:
    server = ControlSocketServer(str(sock_path), lambda: Feed(Sink(), "socket")).start()
    os.unlink(sock_path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(sock_path))
    try:
        server.close()
        assert sock_path.exists()
    finally:
        other.close()


# -- both ---------------------------------------------------------------------------------------------


def test_start_control_starts_what_the_config_asks_for(sock_path: Path) -> None:
    r, w = os.pipe()
    sink = Sink()
    channels = start_control(sink, ControlConfig(socket=str(sock_path)), stdin_fd=r)
    try:
        assert channels.stdin is not None and channels.socket is not None
        os.write(w, line({"op": "status"}))
        assert sink.wait(lambda s: s.ops() == ["status"])
        with client(sock_path) as c:
            c.sendall(line({"op": "reload"}))
            assert sink.wait(lambda s: s.ops() == ["status", "reload"])
    finally:
        channels.close()
        channels.close()
        os.close(w)
        if channels.stdin is not None:
            channels.stdin.thread.join(WAIT)
        os.close(r)
    assert not sock_path.exists()
    nothing = start_control(Sink(), ControlConfig(stdin="off"))
    assert nothing.stdin is None and nothing.socket is None
    nothing.close()


# -- the run flags ------------------------------------------------------------------------------------


def test_run_flags_override_the_control_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shardbeat import cli
    from shardbeat.config import config_from_dict

    doc = {
        "groups": [
            {
                "provider": "sls",
                "endpoint": "http://127.0.0.1:1",
                "project": "demo-project",
                "logstore": "demo-logstore",
                "consumer_group": "demo-group",
                "consumer": "c",
                "credentials": {"access_key_id": "id", "access_key_secret": "secret"},
            }
        ],
        "control": {"socket": "/elsewhere/ctl.sock", "stdin": "off"},
    }
    loaded = config_from_dict(doc)
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(
        ["run", "--config", "x.json", "--control-socket", "rel/ctl.sock", "--exit-on-stdin-eof"]
    )
    control = cli._with_control_flags(loaded, args).config.control
    assert control == ControlConfig(
        socket=str(tmp_path / "rel" / "ctl.sock"), stdin="off", exit_on_stdin_eof=True
    )
    plain = cli.build_parser().parse_args(["run", "--config", "x.json"])
    assert cli._with_control_flags(loaded, plain).config.control == loaded.config.control
    assert cli.main(["run", "--config", "x.json", "--control-socket", " "]) == 2
