"""stdout for records only: a guarded descriptor, a bounded queue and one writer thread.

- Guard: records go to a private duplicate of fd 1, and fd 1 itself is pointed at stderr, so a stray
  print() from any library lands in the log, never in the record stream.
- Writer thread: a stalled reader (host backpressure) blocks only this thread, never a heartbeat or
  the lease watchdog. Each record is one write() of one whole line (or one msgpack map).
- Bounded queue: when full, `lease`, `error` and `status` records are dropped first (each is superseded
  by the next one); then a queued `assignment` snapshot of the same group gives way to the newer one
  (every snapshot is complete, so the newest state is all a consumer needs; the older one's release
  callback still runs when the newer is written). `lost` and `stopped` are always kept. Drops are
  counted, logged and reported in `status` records.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Literal

log = logging.getLogger("shardbeat.output")

Record = dict[str, Any]
Encoder = Callable[[Record], bytes]
_DROPPABLE = frozenset({"lease", "error", "status"})


def json_line(record: Record) -> bytes:
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


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
        on_broken: Callable[[], None] | None = None,
    ) -> None:
        self._fd = fd
        self._encode = encoder
        self._capacity = capacity
        self._on_broken = on_broken
        self._queue: collections.deque[tuple[Record, Callable[[], None] | None]] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._idle = True
        self.broken = False
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="shardbeat-writer", daemon=True)
        self._thread.start()

    def emit(self, record: Record, on_written: Callable[[], None] | None = None) -> None:
        """Queue a record; `on_written` runs on the writer thread once it is out (not if dropped)."""
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
            self._cond.notify()

    def _make_room(self) -> bool:
        for i, (queued, _) in enumerate(self._queue):
            if queued["event"] in _DROPPABLE:
                del self._queue[i]
                self._count_drop()
                return True
        return False

    def _coalesce(self, record: Record, on_written: Callable[[], None] | None) -> Callable[[], None] | None:
        """Drop the newest queued snapshot of the same group; return the callbacks both need run."""
        key = (record.get("provider"), record.get("group"), record.get("consumer"))
        for i in range(len(self._queue) - 1, -1, -1):
            queued, queued_cb = self._queue[i]
            if (
                queued["event"] == "assignment"
                and (queued["provider"], queued["group"], queued["consumer"]) == key
            ):
                del self._queue[i]
                self._count_drop()
                return _chain(queued_cb, on_written)
        return on_written

    def _count_drop(self) -> None:
        self.dropped += 1
        if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8...: visible without flooding
            log.warning("stdout reader is slow: %d superseded records dropped so far", self.dropped)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._idle = True
                    self._cond.notify_all()
                    self._cond.wait()
                if not self._queue:
                    self._idle = True
                    self._cond.notify_all()
                    return
                self._idle = False
                record, on_written = self._queue.popleft()
            try:
                _write_all(self._fd, self._encode(record))
            except BrokenPipeError:
                self._broke()
                return
            except OSError as exc:
                log.error("cannot write records to stdout: %s", exc)
                self._broke()
                return
            self.written += 1
            if on_written is not None:
                on_written()

    def _broke(self) -> None:
        with self._cond:
            self.broken = True
            self._queue.clear()
            self._idle = True
            self._cond.notify_all()
        if self._on_broken is not None:
            self._on_broken()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.broken or (self._idle and not self._queue), timeout)

    def close(self, timeout: float) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)


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
        n = os.write(fd, view)
        view = view[n:]
