"""A host that stops reading stderr must not stall the threads that log (heartbeat workers, watchdog)."""

import logging
import sys
import threading
import time

import pytest

from shardbeat.runtime.logs import StderrHandler, TextFormatter


class BlockedStream:
    def __init__(self) -> None:
        self.open = threading.Event()
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.open.wait(10)
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_logging_never_blocks_on_a_stalled_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = BlockedStream()
    monkeypatch.setattr(sys, "stderr", stream)
    handler = StderrHandler()
    handler.setFormatter(TextFormatter())
    handler.write_in_background(capacity=10)
    log = logging.getLogger("test.stalled")
    log.addHandler(handler)
    log.propagate = False
    try:
        started = time.monotonic()
        for i in range(200):
            log.warning("line %d", i)
        assert time.monotonic() - started < 1.0  # 200 lines while nothing reads stderr
        assert handler.dropped > 0
        stream.open.set()
        handler.flush_backlog(5)
        text = "".join(stream.lines)
        assert "line 0" in text
        assert "log lines dropped" in text
    finally:
        log.removeHandler(handler)
