"""stdout for records only: a guarded descriptor, a bounded queue and one writer thread.

- Guard: records go to a private duplicate of fd 1, and fd 1 itself is pointed at stderr, so a stray
  print() from any library lands in the log, never in the record stream.
- Writer thread: a stalled reader (host backpressure) blocks only this thread, never a heartbeat or
  the lease watchdog. Whole records only: what is queued goes out in one write() of whole lines (or
  msgpack maps), so a reader never sees part of a record before the rest is on its way.
- Bounded queue: when full, `lease`, `error` and `status` records are dropped first (each is superseded
  by the next one); then a queued `assignment` snapshot of the same group gives way to the newer one
  (every snapshot is complete, so the newest state is all a consumer needs; the older one's release
  callback still runs when the newer is written). `lost` and `stopped` are always kept. Drops are
  counted, logged and reported in `status` records.
- A record that will not encode (a lone surrogate, an integer past 64 bits for msgpack, anything) is
  repaired (core.encodable) or, failing that, replaced by an `error` record (source `output`); one bad
  value never stops the stream.
- When nothing can be written any more (the reader closed the pipe, stdout is unusable, even the
  replacement record will not encode, or the thread itself fails), the writer is *broken*: it calls
  `on_broken(reason)` once, and the process must let go of every shard at once (a node that cannot
  tell downstream must not hold shards; see runtime.process).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from shardbeat.core.encodable import repaired, safe_text
from shardbeat.core.records import rfc3339
from shardbeat.core.redaction import SECRETS, describe_exception, masked

log = logging.getLogger("shardbeat.output")

Record = dict[str, Any]
Encoder = Callable[[Record], bytes]
_DROPPABLE = frozenset({"lease", "error", "status"})
BATCH = 256  # records per write at most


# allow_nan=False: NaN/Infinity are not JSON; they go through the repair path instead. One encoder for
# every record (json.dumps with options builds a new one per call, which was half of its cost).
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def json_line(record: Record) -> bytes:
    return (_JSON(record) + "\n").encode()


def msgpack_map(record: Record) -> bytes:
    import msgpack  # lazy: most users never ask for it

    packed: bytes = msgpack.packb(record, use_bin_type=True)
    return packed


def encoder_for(fmt: Literal["json", "msgpack", "text"], colour: bool = False) -> Encoder:
    if fmt == "text":  # the human view (views/text_records.py)
        from shardbeat.views.text_records import text_encoder

        return text_encoder(colour)
    return msgpack_map if fmt == "msgpack" else json_line


def guard_stdout() -> int:
    """Return a private fd for records and point fd 1 (and sys.stdout) at stderr."""
    sys.stdout.flush()
    private = os.dup(1)
    os.dup2(2, 1)
    return private


class RecordWriter:
    def __init__(
        self,
        fd: int,
        encoder: Encoder = json_line,
        capacity: int = 1024,
        on_broken: Callable[[str], None] | None = None,
    ) -> None:
        self._fd = fd
        self._encode = encoder
        self._capacity = capacity
        self._on_broken = on_broken
        self._queue: collections.deque[tuple[Record, Callable[[], None] | None]] = collections.deque()
        # What the queue holds, counted, so a full queue is searched only when the search can succeed:
        # with a stalled reader and thousands of groups every emit would otherwise scan the whole queue
        # under the lock (0.3 ms each on the loop thread; seconds for the `lost`/`stopped` of a stop).
        self._droppable = 0
        self._snapshots: collections.Counter[tuple[object, object, object]] = collections.Counter()
        self._cond = threading.Condition()
        self._closing = False
        self._idle = True
        self._unwoken = False  # records queued with wake=False since the last wake()
        self.broken = False
        self.dropped = 0
        self.written = 0
        self.repaired = 0
        self.broken_reason: str | None = None
        self._thread = threading.Thread(target=self._run, name="shardbeat-writer", daemon=True)
        self._thread.start()
        # The watch holds the descriptor while it polls: close() wakes it through this pipe so a
        # closed writer leaves nothing behind that keeps the reader from seeing end of file.
        self._wake_r, self._wake_w = os.pipe()
        self._watcher = threading.Thread(target=self._watch, name="shardbeat-writer-watch", daemon=True)
        self._watcher.start()

    def emit(self, record: Record, on_written: Callable[[], None] | None = None, wake: bool = True) -> None:
        """Queue a record; `on_written` runs on the writer thread once it is out (not if dropped).
        `wake=False` leaves the writer thread asleep until `wake()`: a loop thread that emits a burst
        of records wakes it once, as it goes to wait itself (one hand-over instead of one per record)."""
        with self._cond:
            if self.broken or self._closing:
                return
            if len(self._queue) >= self._capacity and not self._make_room():
                if record["event"] in _DROPPABLE:
                    self._count_drop()
                    return
                if record["event"] == "assignment":
                    on_written = self._coalesce(record, on_written)
            self._queue.append((record, on_written))
            self._count(record, 1)
            if wake:
                self._cond.notify()
            else:
                self._unwoken = True

    def wake(self) -> None:
        """Wake the writer thread for records emitted with `wake=False` (cheap when there were none)."""
        if self._unwoken:
            with self._cond:
                self._unwoken = False
                self._cond.notify()

    def _count(self, record: Record, step: int) -> None:
        event = record["event"]
        if event in _DROPPABLE:
            self._droppable += step
        elif event == "assignment":
            self._snapshots[_group_of(record)] += step

    def _make_room(self) -> bool:
        if not self._droppable:
            return False
        for i, (queued, _) in enumerate(self._queue):
            if queued["event"] in _DROPPABLE:
                del self._queue[i]
                self._count(queued, -1)
                self._count_drop()
                return True
        return False

    def _coalesce(self, record: Record, on_written: Callable[[], None] | None) -> Callable[[], None] | None:
        """Drop the newest queued snapshot of the same group; return the callbacks both need run."""
        key = _group_of(record)
        if not self._snapshots[key]:
            return on_written
        for i in range(len(self._queue) - 1, -1, -1):
            queued, queued_cb = self._queue[i]
            if (
                queued["event"] == "assignment"
                and (queued["provider"], queued["group"], queued["consumer"]) == key
            ):
                del self._queue[i]
                self._count(queued, -1)
                self._count_drop()
                return _chain(queued_cb, on_written)
        return on_written

    def _count_drop(self) -> None:
        self.dropped += 1
        if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8...: visible without flooding
            log.warning("stdout reader is slow: %d superseded records dropped so far", self.dropped)

    def _run(self) -> None:
        try:
            reason = self._drain()
        except BaseException as exc:  # a bug in here must still let go of the shards
            reason = f"the record writer failed ({describe_exception(exc)})"
        if reason is not None:
            self._broke(reason)

    def _watch(self) -> None:
        """Notice a reader that has gone at once, not at the next record (up to an interval later):
        the write end of a pipe whose reader closed reports POLLERR even with nothing to write."""
        poller = select.poll()
        poller.register(self._fd, 0)  # no events asked: only error, hang-up and invalid are reported
        poller.register(self._wake_r, select.POLLIN)
        try:
            events = poller.poll()
        except OSError:
            return
        gone = 0
        for fd, mask in events:
            if fd == self._fd:
                gone |= mask
        with self._cond:
            if self._closing:
                return  # our own shutdown; whatever happens to the descriptor now is not news
        if gone & select.POLLNVAL:
            self._broke("stdout is no longer open")
        elif gone & (select.POLLERR | select.POLLHUP):
            self._broke("stdout was closed by the reader")

    def _drain(self) -> str | None:
        """Write until closed (-> None) or until nothing can be written any more (-> why)."""
        while True:
            with self._cond:
                if self.broken:
                    return None  # the watch found the reader gone; it has said so already
                while not self._queue and not self._closing and not self.broken:
                    self._idle = True
                    self._cond.notify_all()
                    self._cond.wait()
                if not self._queue:
                    self._idle = True
                    self._cond.notify_all()
                    return None
                self._idle = False
                # Everything queued goes out in one write: one wake-up and one syscall for a burst
                # (many groups beat in the same millisecond), not one per record.
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH))]
                for record, _ in batch:
                    self._count(record, -1)
            chunks: list[bytes] = []
            failed = None
            for record, _ in batch:
                data = self._encoded(record)
                if data is None:
                    failed = "records cannot be encoded (even the replacement error record failed)"
                    batch = batch[: len(chunks)]
                    break
                chunks.append(data)
            try:
                _write_all(self._fd, b"".join(chunks))
            except BrokenPipeError:
                return "stdout was closed by the reader"
            except OSError as exc:
                return f"cannot write records to stdout: {exc.strerror or type(exc).__name__}"
            self.written += len(chunks)
            for record, on_written in batch:
                if on_written is not None:
                    try:
                        on_written()
                    except Exception:  # a bug in a callback is not a broken stream
                        log.exception("internal error after writing a %s record", record.get("event"))
            if failed is not None:
                return failed

    def _encoded(self, record: Record) -> bytes | None:
        """The record's bytes, with any secret masked; else a repaired copy's; else an `error`
        record's; else None."""
        data = self._encoded_as_is(record)
        if data is not None and SECRETS.found_in(data):
            # A server or library echoed a secret into some field: mask it wherever it sits.
            data = self._encoded_as_is(masked(record))
        return data

    def _encoded_as_is(self, record: Record) -> bytes | None:
        try:
            return self._encode(record)
        except Exception as exc:
            failure = exc
        self.repaired += 1
        level = logging.WARNING if self.repaired & (self.repaired - 1) == 0 else logging.DEBUG
        what = _event_name(record)
        try:
            data = self._encode(repaired(record))
        except Exception:
            log.log(
                level, "a %s record could not be encoded (%s): replaced", what, describe_exception(failure)
            )
            try:
                return self._encode(unencodable(record, failure))
            except Exception:
                return None
        log.log(
            level, "a %s record could not be encoded as is (%s): repaired", what, describe_exception(failure)
        )
        return data

    def _broke(self, reason: str) -> None:
        """Once only (the writer thread and the watch may both find out)."""
        with self._cond:
            if self.broken:
                return
            self.broken = True
            self.broken_reason = reason
            self._queue.clear()
            self._droppable = 0
            self._snapshots.clear()
            self._idle = True
            self._cond.notify_all()
        if self._on_broken is not None:
            try:
                self._on_broken(reason)
            except Exception:  # the shards must still be let go of: say so loudly, never silently
                log.exception("internal error while reacting to a broken record stream (%s)", reason)

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        with self._cond:
            self._unwoken = False
            self._cond.notify()  # records queued with wake=False are part of "so far"
            return self._cond.wait_for(lambda: self.broken or (self._idle and not self._queue), timeout)

    def close(self, timeout: float) -> None:
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        os.write(self._wake_w, b"x")
        self._watcher.join(timeout)
        if not self._watcher.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)


def unencodable(record: Record, failure: BaseException) -> Record:
    """The `error` record written in place of one that would not encode even when repaired."""
    at = record.get("time")
    replacement: Record = {
        "event": "error",
        "time": safe_text(at) if isinstance(at, str) else rfc3339(time.time()),
    }
    for key in ("provider", "group", "consumer"):
        value = record.get(key)
        if isinstance(value, str) and value:
            replacement[key] = safe_text(value)
    replacement["source"] = "output"
    replacement["error"] = {
        "code": "UnencodableRecord",
        "message": f"a {_event_name(record)} record could not be encoded ({describe_exception(failure)})",
        "status": None,
        "request_id": None,
    }
    return replacement


def _event_name(record: Record) -> str:
    event = record.get("event")
    return repr(safe_text(event)) if isinstance(event, str) else "malformed"


def _group_of(record: Record) -> tuple[object, object, object]:
    return record.get("provider"), record.get("group"), record.get("consumer")


def _chain(first: Callable[[], None] | None, second: Callable[[], None] | None) -> Callable[[], None] | None:
    if first is None or second is None:
        return first or second

    def both() -> None:
        first()
        second()

    return both


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            # The host gave us a non-blocking stdout (O_NONBLOCK lives on the pipe's open file, which
            # it shares with us): a full pipe is a reader that is slow, not gone. Wait as a blocking
            # write would; a reader that leaves wakes the wait, and the next write says EPIPE.
            _wait_writable(fd)
            continue
        view = view[n:]


def _wait_writable(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    poller.poll()
