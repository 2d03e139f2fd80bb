import json
import os
import subprocess
import sys
import threading

from shardbeat.runtime.output import RecordWriter, json_line, msgpack_map


def rec(event: str, n: int) -> dict:  # type: ignore[type-arg]
    return {"event": event, "n": n}


def read_lines(fd: int) -> list[dict]:  # type: ignore[type-arg]
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_records_are_compact_lines_in_order_and_callbacks_run_after_the_write() -> None:
    r, w = os.pipe()
    writer = RecordWriter(w)
    seen: list[int] = []
    for i in range(5):
        writer.emit(rec("assignment", i), on_written=lambda i=i: seen.append(i))
    assert writer.flush(5)
    writer.close(1)
    os.close(w)
    assert [x["n"] for x in read_lines(r)] == [0, 1, 2, 3, 4]
    assert seen == [0, 1, 2, 3, 4]


def test_json_line_is_one_compact_line() -> None:
    line = json_line({"event": "lease", "x": "é", "y": [1, 2]})
    assert line == '{"event":"lease","x":"é","y":[1,2]}\n'.encode()


def test_msgpack_roundtrip() -> None:
    import msgpack

    assert msgpack.unpackb(msgpack_map({"event": "lease", "n": 1})) == {"event": "lease", "n": 1}


def test_broken_pipe_reports_once_with_the_reason() -> None:
    r, w = os.pipe()
    os.close(r)
    broken = threading.Event()
    reasons: list[str] = []
    writer = RecordWriter(w, on_broken=lambda why: (reasons.append(why), broken.set()))
    writer.emit(rec("assignment", 1))
    assert broken.wait(5)
    assert writer.broken
    assert reasons == ["stdout was closed by the reader"]
    writer.emit(rec("assignment", 2))  # ignored, no exception
    writer.close(1)
    os.close(w)


def test_stalled_reader_drops_superseded_records_first() -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)
    filler = b"x" * 65536
    try:
        while True:
            os.write(w, filler)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)
    writer = RecordWriter(w, capacity=4)
    writer.emit(rec("lease", 0))  # the writer thread takes this one and blocks on the full pipe
    assert not writer.flush(0.2)
    for i in range(1, 4):
        writer.emit(rec("lease", i))
    writer.emit(rec("assignment", 10))
    for i in range(11, 20):
        writer.emit(rec("lost" if i % 2 else "lease", i))  # lost records are never dropped
    assert writer.dropped > 0
    # drain the pipe: the filler, then the records
    chunks: list[bytes] = []
    t = threading.Thread(target=lambda: chunks.append(b"".join(iter(lambda: os.read(r, 1 << 16), b""))))
    t.start()
    assert writer.flush(5)
    writer.close(1)
    os.close(w)
    t.join(5)
    got = chunks[0]
    lines = [json.loads(line) for line in got.replace(b"x", b"").splitlines() if line]
    events = [(x["event"], x["n"]) for x in lines]
    assert ("assignment", 10) in events
    assert all(("lost", i) in events for i in range(11, 20, 2))
    assert len(events) + writer.dropped == 14
    assert [e for e in events if e[0] != "lease"] == [("assignment", 10)] + [
        ("lost", i) for i in range(11, 20, 2)
    ]


def test_guard_sends_stray_prints_to_stderr() -> None:
    code = (
        "import os; from shardbeat.runtime.output import guard_stdout\n"
        "fd = guard_stdout()\n"
        "print('stray library noise')\n"
        'os.write(fd, b\'{"event":"x"}\\n\')\n'
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, check=True)
    assert out.stdout == b'{"event":"x"}\n'
    assert b"stray library noise" in out.stderr


def test_full_queue_coalesces_assignment_snapshots_of_a_group_and_keeps_callbacks() -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        while True:
            os.write(w, b"x" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)
    writer = RecordWriter(w, capacity=2)
    called: list[int] = []

    def snap(n: int, group: str = "g") -> dict:  # type: ignore[type-arg]
        return {"event": "assignment", "provider": "sls", "group": group, "consumer": "c", "n": n}

    writer.emit({"event": "lost", "n": -1})  # taken by the writer thread, which then blocks
    assert not writer.flush(0.2)
    writer.emit(snap(1), on_written=lambda: called.append(1))
    writer.emit(snap(2, group="other"))
    writer.emit(snap(3), on_written=lambda: called.append(3))  # full: replaces snapshot 1
    writer.emit(snap(4), on_written=lambda: called.append(4))  # full: replaces snapshot 3
    assert writer.dropped == 2
    chunks: list[bytes] = []
    t = threading.Thread(target=lambda: chunks.append(b"".join(iter(lambda: os.read(r, 1 << 16), b""))))
    t.start()
    assert writer.flush(5)
    writer.close(1)
    os.close(w)
    t.join(5)
    lines = [json.loads(line) for line in chunks[0].replace(b"x", b"").splitlines() if line]
    assert [x["n"] for x in lines] == [-1, 2, 4]
    assert called == [1, 3, 4]  # every replaced snapshot's release still happens, in order


class Probe(dict[str, object]):
    """A record that counts how often the writer looks into it."""

    looks = 0

    def __getitem__(self, key: str) -> object:
        Probe.looks += 1
        return super().__getitem__(key)


def test_a_full_queue_is_searched_only_when_something_in_it_can_give_way() -> None:
    """A stalled reader and thousands of groups: every emit scanned the whole full queue under the
    lock (on the loop thread), and a stop's `lost`/`stopped` took seconds to queue. Counted, not timed:
    each emit may look at a few records, never at the whole queue."""
    r, w = os.pipe()
    groups = 1000
    writer = RecordWriter(w, capacity=100)
    try:
        writer.emit({"event": "status", "n": -1, "pad": "x" * 200_000})  # the writer blocks on this write
        assert not writer.flush(0.2)
        for i in range(groups):  # undroppable: the queue grows past its capacity
            writer.emit(Probe(rec("assignment", i), provider="sls", group=f"g{i}", consumer="c"))
        Probe.looks = 0
        for i in range(groups):
            writer.emit(Probe(rec("lease", i), provider="sls", group=f"g{i}", consumer="c"))
            writer.emit(Probe(rec("lost", i), provider="sls", group=f"g{i}", consumer="c"))
            writer.emit(Probe(rec("stopped", i), provider="sls", group=f"g{i}", consumer="c"))
        assert Probe.looks < 10 * 3 * groups, f"{Probe.looks} looks for {3 * groups} emits"
        assert writer.dropped == groups  # the policy holds: each lease gave way, nothing else did
    finally:
        os.close(r)  # the blocked write fails: the writer ends
        writer.close(1)
        os.close(w)


def test_records_emitted_without_waking_the_writer_go_out_at_its_next_wake_or_flush() -> None:
    """The loop thread queues a turn's records with wake=False and wakes the writer once; such records
    must still go out, at the wake (or a flush), and only then."""
    import select

    r, w = os.pipe()
    writer = RecordWriter(w)
    writer.emit(rec("assignment", 0))
    assert writer.flush(5)  # the writer thread is now waiting for a wake-up
    assert b'"n":0' in os.read(r, 65536)
    writer.emit(rec("lease", 1), wake=False)
    writer.emit(rec("lease", 2), wake=False)
    assert select.select([r], [], [], 0.2)[0] == []  # not woken: nothing written yet
    writer.wake()
    assert select.select([r], [], [], 5)[0] == [r]
    data = b""
    while data.count(b"\n") < 2 and select.select([r], [], [], 5)[0]:
        data += os.read(r, 65536)
    assert [json.loads(line)["n"] for line in data.splitlines()] == [1, 2]
    writer.emit(rec("lease", 3), wake=False)
    assert writer.flush(5)  # a flush counts records not yet woken for
    writer.close(1)
    os.close(w)
    assert [x["n"] for x in read_lines(r)] == [3]


def test_a_non_blocking_stdout_with_a_slow_reader_waits_it_does_not_break() -> None:
    """O_NONBLOCK set by the host on the pipe it shares with us: a full pipe gave EAGAIN, read as
    "cannot write records to stdout", and a reader that merely paused cost every shard and the exit."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    filler = b"x" * 65536
    while True:  # the reader pauses: the pipe is full
        try:
            os.write(w, filler)
        except BlockingIOError:
            break
    broken: list[str] = []
    writer = RecordWriter(w, on_broken=broken.append)
    for i in range(50):
        writer.emit(rec("assignment", i))
    assert not writer.flush(0.3)  # waiting for the reader, as a blocking write would
    got = b""
    while b'"n":49' not in got:  # the reader resumes
        got += os.read(r, 1 << 20)
    assert writer.flush(5)
    assert broken == [] and not writer.broken
    writer.close(1)
    os.close(w)
    got += b"".join(iter(lambda: os.read(r, 1 << 20), b""))
    lines = [json.loads(line) for line in got.replace(b"x", b"").splitlines()]  # the filler is all "x"
    assert [x["n"] for x in lines] == list(range(50))
