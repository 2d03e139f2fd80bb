"""The record writer survives any value, and says so once when nothing can be written any more."""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from shardbeat.core.encodable import repaired
from shardbeat.providers.base import Credentials
from shardbeat.runtime import output
from shardbeat.runtime.output import Encoder, RecordWriter, json_line, msgpack_map

Record = dict[str, Any]


def drain(r: int) -> bytes:
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    return data


def run_writer(records: list[Record], encoder: Encoder = json_line) -> tuple[bytes, RecordWriter, list[str]]:
    r, w = os.pipe()
    reasons: list[str] = []
    writer = RecordWriter(w, encoder, on_broken=reasons.append)
    for record in records:
        writer.emit(record)
    assert writer.flush(5)
    writer.close(1)
    os.close(w)
    data = drain(r)
    os.close(r)
    return data, writer, reasons


def group_record(**fields: Any) -> Record:
    return {
        "event": "error",
        "time": "2026-11-23T17:10:00.123Z",
        "provider": "cls",
        "group": "g",
        "consumer": "c",
        **fields,
    }


HOSTILE: list[Any] = [
    "oops \udc80",  # an escaped lone surrogate in a server message
    {"k\ud800": ["\udfff", 2**64, -(2**63) - 1, math.nan, math.inf]},
    b"\xff\xfe bytes",
    object(),
    2**70,
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("encoder", [json_line, msgpack_map], ids=["json", "msgpack"])
def test_an_unencodable_value_is_repaired_and_the_stream_goes_on(value: Any, encoder: Encoder) -> None:
    data, writer, reasons = run_writer(
        [group_record(n=1), group_record(n=2, error={"message": value}), group_record(n=3)], encoder
    )
    if encoder is json_line:
        got = [json.loads(line) for line in data.splitlines()]
    else:
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(data)
        got = list(unpacker)
    assert [g["n"] for g in got] == [1, 2, 3]
    assert not writer.broken and reasons == []
    if value == "oops \udc80":
        assert got[1]["error"]["message"] == "oops \\udc80" and writer.repaired == 1


def test_repaired_values_are_readable() -> None:
    fixed = repaired({"m": "oops \udc80", "big": 2**64, "nan": math.nan, 3: "x"})
    assert fixed == {"m": "oops \\udc80", "big": str(2**64), "nan": "nan", "3": "x"}


def test_a_record_that_cannot_be_repaired_is_replaced_by_an_error_record() -> None:
    def picky(record: Record) -> bytes:
        if record.get("event") != "error":
            raise TypeError("this encoder only writes errors")
        return json_line(record)

    data, writer, reasons = run_writer([group_record(n=1), {**group_record(), "event": "lease"}], picky)
    got = [json.loads(line) for line in data.splitlines()]
    assert got[0]["n"] == 1
    assert got[1]["source"] == "output" and got[1]["error"]["code"] == "UnencodableRecord"
    assert got[1]["group"] == "g" and "'lease'" in got[1]["error"]["message"]
    assert not writer.broken and reasons == []


def test_an_encoder_that_fails_on_everything_breaks_the_writer_once() -> None:
    def hopeless(record: Record) -> bytes:
        raise ValueError("nothing encodes")

    data, writer, reasons = run_writer([group_record(n=1), group_record(n=2)], hopeless)
    assert data == b""
    assert writer.broken and len(reasons) == 1 and "cannot be encoded" in reasons[0]


def test_a_failing_callback_does_not_stop_the_writer() -> None:
    r, w = os.pipe()
    writer = RecordWriter(w, on_broken=lambda why: None)

    def bad() -> None:
        raise RuntimeError("bug in a release callback")

    writer.emit(group_record(n=1), on_written=bad)
    writer.emit(group_record(n=2))
    assert writer.flush(5)
    writer.close(1)
    os.close(w)
    assert [json.loads(x)["n"] for x in drain(r).splitlines()] == [1, 2]
    assert not writer.broken


def test_an_exception_in_the_writer_thread_breaks_it_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(fd: int, data: bytes) -> None:
        raise RuntimeError("writer bug")

    monkeypatch.setattr(output, "_write_all", explode)
    r, w = os.pipe()
    broken = threading.Event()
    reasons: list[str] = []
    writer = RecordWriter(w, on_broken=lambda why: (reasons.append(why), broken.set()))
    writer.emit(group_record(n=1))
    assert broken.wait(5)
    assert writer.broken and reasons == ["the record writer failed (RuntimeError: writer bug)"]
    writer.close(1)
    os.close(w)
    os.close(r)


def test_a_closed_descriptor_breaks_the_writer() -> None:
    w = 4000  # a descriptor number nothing has open (EBADF), as when stdout is gone under us
    with pytest.raises(OSError):
        os.fstat(w)
    broken = threading.Event()
    reasons: list[str] = []
    writer = RecordWriter(w, on_broken=lambda why: (reasons.append(why), broken.set()))
    writer.emit(group_record(n=1))
    assert broken.wait(5)
    # Whichever notices first: the watch (invalid descriptor) or the write (EBADF).
    assert reasons and reasons[0] in (
        "stdout is no longer open",
        "cannot write records to stdout: Bad file descriptor",
    )
    writer.close(1)


@pytest.mark.parametrize("encoder", [json_line, msgpack_map], ids=["json", "msgpack"])
def test_a_secret_echoed_into_any_field_is_masked(encoder: Callable[[Record], bytes]) -> None:
    Credentials("AKIDexample", "s3cr3t-key-value", 'sts-token-with-"quote"')
    record = group_record(
        n=1, error={"message": "server says s3cr3t-key-value"}, extra=['x sts-token-with-"quote" y']
    )
    data, _, _ = run_writer([record], encoder)
    assert b"s3cr3t-key-value" not in data and b"sts-token-with" not in data
    assert b"[redacted]" in data
