"""`python writer_fault_launcher.py FAULT N shardbeat-args...`: run shardbeat with its record writer
broken on purpose once N records are out, for tests/test_writer_death.py.

FAULT: `encoder` (every encode raises, the replacement error record's too), `thread` (the write path
raises an unexpected exception), `ebadf` (the record descriptor is closed under the writer). The moment
the fault fires is written to stderr as `FAULT-FIRED <unix time>`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from shardbeat.cli import main
from shardbeat.runtime import output

fault, after, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
state = {"written": 0, "fired": False}
real_write_all = output._write_all


def fire() -> None:
    if not state["fired"]:
        state["fired"] = True
        os.write(2, f"FAULT-FIRED {time.time():.6f}\n".encode())


def write_all(fd: int, data: bytes) -> None:
    if state["written"] >= after:
        fire()
        if fault == "thread":
            raise RuntimeError("injected writer-thread failure")
        if fault == "ebadf":
            os.close(fd)
    state["written"] += 1
    real_write_all(fd, data)


real_json_line = output.json_line


def json_line(record: Any) -> bytes:
    if fault == "encoder" and state["written"] >= after:
        fire()
        raise ValueError("injected encoder failure")
    return real_json_line(record)


output._write_all = write_all
output.json_line = json_line
output.encoder_for = lambda fmt, colour=False: json_line  # type: ignore[assignment]
raise SystemExit(main(args))
