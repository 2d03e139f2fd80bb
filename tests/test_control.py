"""The control message decoder and validation: every kind of good and bad input, both encodings."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from shardbeat.runtime.control import (
    INVALID_ENCODING,
    INVALID_JSON,
    INVALID_MESSAGE,
    INVALID_MSGPACK,
    MAX_MESSAGE_BYTES,
    TOO_LARGE,
    TRUNCATED,
    UNKNOWN_OP,
    ControlDecoder,
    ControlMessage,
    ControlProblem,
    message_from,
)

Item = ControlMessage | ControlProblem


def line(doc: Any) -> bytes:
    return (json.dumps(doc) + "\n").encode()


def packed(doc: Any) -> bytes:
    data: bytes = msgpack.packb(doc, use_bin_type=True)
    return data


def codes(items: list[Item]) -> list[str]:
    return [i.op if isinstance(i, ControlMessage) else f"!{i.code}" for i in items]


def feed_all(chunks: list[bytes], finish: bool = True) -> tuple[ControlDecoder, list[Item]]:
    decoder = ControlDecoder()
    out: list[Item] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    if finish:
        out += decoder.finish()
    return decoder, out


def problem(doc: Any) -> ControlProblem:
    result = message_from(doc)
    assert isinstance(result, ControlProblem), result
    return result


# -- validation -----------------------------------------------------------------------------------


def test_every_op_in_its_simplest_valid_form() -> None:
    assert message_from({"op": "status"}) == ControlMessage("status")
    assert message_from({"op": "reload"}) == ControlMessage("reload")
    assert message_from({"op": "stop"}) == ControlMessage("stop")
    assert message_from({"op": "heartbeat"}) == ControlMessage("heartbeat")
    hb = message_from({"op": "heartbeat", "group": "g", "provider": "cls", "consumer": "c"})
    assert hb == ControlMessage("heartbeat", "g", "cls", "c")
    released = message_from({"op": "released", "group": "g", "shards": {"ls": [3, 1], "empty": []}})
    assert released == ControlMessage("released", "g", shards={"ls": frozenset({1, 3})})
    held = message_from({"op": "held", "group": "g", "provider": "sls", "consumer": "c", "shards": {}})
    assert held == ControlMessage("held", "g", "sls", "c", {})


def test_an_integral_float_is_a_shard_id_as_in_json_schema() -> None:
    msg = message_from({"op": "released", "group": "g", "shards": {"t": [2.0]}})
    assert isinstance(msg, ControlMessage) and msg.shards == {"t": frozenset({2})}
    assert isinstance(next(iter(msg.shards["t"])), int)


@pytest.mark.parametrize(
    ("doc", "code", "words"),
    [
        ([1, 2], INVALID_MESSAGE, "must be an object, not an array"),
        ("status", INVALID_MESSAGE, "must be an object, not a string"),
        (None, INVALID_MESSAGE, "not null"),
        ({}, INVALID_MESSAGE, "missing op"),
        ({"group": "g"}, INVALID_MESSAGE, "missing op"),
        ({"op": 3}, INVALID_MESSAGE, "op must be a string, not an integer"),
        ({"op": "restart"}, UNKNOWN_OP, 'unknown op "restart"; known: released, held'),
        ({"op": "x" * 500}, UNKNOWN_OP, "unknown op"),
        ({"op": "status", "extra": 1}, INVALID_MESSAGE, 'unknown field "extra"'),
        ({"op": "status", "group": "g"}, INVALID_MESSAGE, "op status takes no group"),
        ({"op": "stop", "shards": {}}, INVALID_MESSAGE, "op stop takes no shards"),
        ({"op": "reload", "consumer": "c"}, INVALID_MESSAGE, "op reload takes no consumer"),
        ({"op": "heartbeat", "shards": {"t": [1]}}, INVALID_MESSAGE, "op heartbeat takes no shards"),
        ({"op": "released", "shards": {"t": [1]}}, INVALID_MESSAGE, "op released needs group"),
        ({"op": "held", "group": "g"}, INVALID_MESSAGE, "op held needs shards"),
        ({"op": "released"}, INVALID_MESSAGE, "needs group and shards"),
        ({"op": "heartbeat", "group": ""}, INVALID_MESSAGE, "group must be 1 to 255 characters"),
        ({"op": "heartbeat", "group": "g" * 256}, INVALID_MESSAGE, "group must be 1 to 255"),
        ({"op": "heartbeat", "group": 7}, INVALID_MESSAGE, "group must be a string, not an integer"),
        ({"op": "heartbeat", "group": None}, INVALID_MESSAGE, "group must be a string, not null"),
        ({"op": "heartbeat", "consumer": ["c"]}, INVALID_MESSAGE, "consumer must be a string, not an array"),
        ({"op": "heartbeat", "provider": "aws"}, INVALID_MESSAGE, 'provider must be sls or cls, not "aws"'),
        ({"op": "heartbeat", "provider": 1}, INVALID_MESSAGE, "provider must be sls or cls, not an integer"),
        ({"op": "released", "group": "g", "shards": [1]}, INVALID_MESSAGE, "shards must be an object"),
        ({"op": "released", "group": "g", "shards": {"": [1]}}, INVALID_MESSAGE, "non-empty strings"),
        ({"op": "released", "group": "g", "shards": {"t": 1}}, INVALID_MESSAGE, 'shards["t"] must be a list'),
        ({"op": "released", "group": "g", "shards": {"t": [-1]}}, INVALID_MESSAGE, "must be >= 0"),
        ({"op": "released", "group": "g", "shards": {"t": ["1"]}}, INVALID_MESSAGE, "not a string"),
        ({"op": "released", "group": "g", "shards": {"t": [True]}}, INVALID_MESSAGE, "not a boolean"),
        ({"op": "released", "group": "g", "shards": {"t": [1.5]}}, INVALID_MESSAGE, "not a number"),
        ({"op": "released", "group": "g", "shards": {"t": [float("nan")]}}, INVALID_MESSAGE, "integers"),
        ({"op": "released", "group": "g", "shards": {"t": [None]}}, INVALID_MESSAGE, "not null"),
        (
            {"op": "released", "group": "g", "shards": {"t": [1, 1]}},
            INVALID_MESSAGE,
            "lists a shard id twice",
        ),
        ({"op": "released", "group": "g", "shards": {"t": [1, 1.0]}}, INVALID_MESSAGE, "twice"),
        ({1: "status", "op": "status"}, INVALID_MESSAGE, "field names must be strings"),
    ],
)
def test_each_invalid_message_gets_a_specific_problem(doc: Any, code: str, words: str) -> None:
    found = problem(doc)
    assert found.code == code
    assert words in found.message, found.message


def test_problem_messages_quote_only_a_short_escaped_piece_of_the_input() -> None:
    found = problem({"op": "\n" + "A" * 1000})
    assert len(found.message) < 200
    assert "\n" not in found.message and "\\n" in found.message


# -- JSON lines -------------------------------------------------------------------------------------


def test_json_lines_in_one_feed_and_byte_by_byte() -> None:
    data = line({"op": "status"}) + line({"op": "heartbeat", "group": "g"}) + line({"op": "stop"})
    decoder, whole = feed_all([data])
    assert decoder.mode == "json"
    assert codes(whole) == ["status", "heartbeat", "stop"]
    _, split = feed_all([data[i : i + 1] for i in range(len(data))])
    assert split == whole


def test_json_tolerates_crlf_blank_lines_leading_whitespace_and_a_bom() -> None:
    data = b"\n \r\n\xef\xbb\xbf" + b'{"op":"status"}\r\n\n\n  {"op":"stop"}  \n'
    _, out = feed_all([data])
    assert codes(out) == ["status", "stop"]
    _, split = feed_all([data[i : i + 1] for i in range(len(data))])
    assert codes(split) == ["status", "stop"]


def test_json_last_line_without_newline_counts_at_end_of_stream() -> None:
    decoder = ControlDecoder()
    assert decoder.feed(b'{"op":"status"}') == []
    assert codes(decoder.finish()) == ["status"]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (b"{not json}\n", INVALID_JSON),
        (b'{"op": "status"\n', INVALID_JSON),
        (b"garbage\n", INVALID_JSON),
        (b'{"op": "st\xffatus"}\n', INVALID_ENCODING),
        (b"[" * 100_000 + b"\n", TOO_LARGE),
        (b"[" * 30_000 + b"]" * 30_000 + b"\n", INVALID_JSON),  # nesting too deep
        (b'{"op": "released", "group": "g", "shards": {"t": [' + b"9" * 5000 + b"]}}\n", INVALID_JSON),
        (b"[1, 2]\n", INVALID_MESSAGE),
        (b'{"op": "launch"}\n', UNKNOWN_OP),
        (b"\x00\x01\x02\n", INVALID_JSON),
    ],
)
def test_a_bad_line_is_reported_and_the_next_line_still_works(bad: bytes, code: str) -> None:
    good = line({"op": "status"})
    _, out = feed_all([good, bad, good])
    assert codes(out) == ["status", f"!{code}", "status"]


def test_bad_json_first_line_still_locks_json_mode_and_resynchronises() -> None:
    decoder, out = feed_all([b"hello world\n", line({"op": "stop"})])
    assert decoder.mode == "json"
    assert codes(out) == ["!InvalidJson", "stop"]


def test_a_huge_line_fed_in_pieces_is_reported_once_and_skipped_to_its_newline() -> None:
    decoder = ControlDecoder()
    out: list[Item] = decoder.feed(b'{"op": "status", "pad": "')
    for _ in range(40):  # 40 * 8 KiB: well over the limit
        out += decoder.feed(b"x" * 8192)
    out += decoder.feed(b'"}\n' + line({"op": "reload"}))
    out += decoder.finish()
    assert codes(out) == ["!MessageTooLarge", "reload"]
    assert str(MAX_MESSAGE_BYTES) in out[0].message  # type: ignore[union-attr]


def test_a_line_of_exactly_the_limit_is_accepted_one_byte_more_is_not() -> None:
    head = b'{"op":"status"}'
    fits = head + b" " * (MAX_MESSAGE_BYTES - len(head)) + b"\n"
    too_long = head + b" " * (MAX_MESSAGE_BYTES + 1 - len(head)) + b"\n"
    assert codes(feed_all([fits])[1]) == ["status"]
    assert codes(feed_all([too_long])[1]) == ["!MessageTooLarge"]


def test_an_unterminated_huge_line_at_end_of_stream_is_reported_once() -> None:
    _, out = feed_all([b"{" + b"x" * (MAX_MESSAGE_BYTES + 10)])
    assert codes(out) == ["!MessageTooLarge"]


def test_whitespace_only_input_decides_nothing() -> None:
    decoder, out = feed_all([b"  \n\t\r\n"])
    assert decoder.mode is None and out == []


# -- MessagePack ------------------------------------------------------------------------------------


def test_msgpack_stream_in_one_feed_and_byte_by_byte() -> None:
    docs = [{"op": "status"}, {"op": "released", "group": "g", "shards": {"ls": [0, 2]}}, {"op": "stop"}]
    data = b"".join(packed(d) for d in docs)
    decoder, whole = feed_all([data])
    assert decoder.mode == "msgpack"
    assert codes(whole) == ["status", "released", "stop"]
    assert whole[1] == ControlMessage("released", "g", shards={"ls": frozenset({0, 2})})
    _, split = feed_all([data[i : i + 1] for i in range(len(data))])
    assert split == whole


def test_msgpack_map16_and_leading_whitespace_are_detected() -> None:
    doc = {"op": "heartbeat", **{f"k{i}": i for i in range(20)}}
    data = packed(doc)
    assert data[0] == 0xDE
    decoder, out = feed_all([b"\n " + data])
    assert decoder.mode == "msgpack"
    assert codes(out) == ["!InvalidMessage"]  # unknown fields, but decoded as one map


def test_many_small_msgpack_messages_in_one_large_read_are_not_too_large() -> None:
    data = packed({"op": "heartbeat"}) * 20_000  # ~ 240 KB in one feed
    assert len(data) > 3 * MAX_MESSAGE_BYTES
    _, out = feed_all([data])
    assert len(out) == 20_000 and all(isinstance(m, ControlMessage) for m in out)


def test_msgpack_undecodable_byte_is_reported_and_decoding_restarts_with_the_next_input() -> None:
    decoder = ControlDecoder()
    out = decoder.feed(packed({"op": "status"}))
    out += decoder.feed(b"\xc1\xc1\xc1")  # 0xc1 is never valid MessagePack
    out += decoder.feed(packed({"op": "stop"}))
    assert codes(out) == ["status", "!InvalidMsgpack", "stop"]


def test_msgpack_problems_in_one_bad_patch_are_reported_once_then_again_after_a_good_message() -> None:
    decoder = ControlDecoder()
    out = decoder.feed(packed({"op": "status"}))
    out += decoder.feed(b"\xc1")
    out += decoder.feed(packed([1, 2]))  # decodable but not a map: same bad patch, muted
    out += decoder.feed(b"\xc1")
    out += decoder.feed(packed({"op": "reload"}))
    out += decoder.feed(packed({"op": "nope"}))
    assert codes(out) == ["status", "!InvalidMsgpack", "reload", "!UnknownOp"]
    assert decoder.muted == 2


@pytest.mark.parametrize(
    "bad",
    [
        packed({"op": "fly"}),
        packed({"op": "status", "group": "g"}),  # a field the op does not take
        packed({1: "status"}),
        b"\x82\xa2op\xa6status\xa2op\xa4stop",  # a key given twice
        packed({"op": "x" * (MAX_MESSAGE_BYTES - 100), "pad": "y" * 200}),  # whole, but over the limit
    ],
)
def test_each_whole_but_invalid_msgpack_map_is_reported_not_muted(bad: bytes) -> None:
    """A well-formed map that is no valid message used to start a bad patch: the next ones were
    muted, so a socket client sending three such messages got one reply, and waited for the rest."""
    _, out = feed_all([bad * 3 + packed({"op": "status"})])
    assert [c[0] for c in codes(out)] == ["!", "!", "!", "s"]
    _, split = feed_all([bytes([b]) for b in bad * 3 + packed({"op": "status"})])
    assert codes(split) == codes(out)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (packed([{"op": "status"}]), INVALID_MESSAGE),  # an array, not a map
        (packed({1: "status"}), INVALID_MESSAGE),  # non-string key
        (packed({"op": b"status"}), INVALID_MESSAGE),  # bin, not str
        (
            packed({"op": "released", "group": "g", "shards": {"t": [msgpack.ExtType(5, b"x")]}}),
            INVALID_MESSAGE,
        ),
        (b"\x81\xa2op\xa2\xff\xfe", INVALID_MSGPACK),  # str that is not UTF-8
        (b"\x81" * 5000 + b"\x01", INVALID_MSGPACK),  # nesting too deep
        (packed({"op": "x" * (MAX_MESSAGE_BYTES + 100)}), TOO_LARGE),
        (packed({"op": "launch"}), UNKNOWN_OP),
    ],
)
def test_msgpack_bad_input_classes(payload: bytes, code: str) -> None:
    _, out = feed_all([payload, packed({"op": "stop"})])
    assert codes(out)[0] == f"!{code}"
    assert all(isinstance(i, ControlProblem) for i in out[:-1])


def test_msgpack_stream_ending_mid_message_is_truncated() -> None:
    data = packed({"op": "status"}) + packed({"op": "reload"})[:-2]
    _, out = feed_all([data])
    assert codes(out) == ["status", f"!{TRUNCATED}"]
    _, clean = feed_all([packed({"op": "status"})])
    assert codes(clean) == ["status"]


def test_a_msgpack_stream_cut_anywhere_inside_a_message_is_truncated() -> None:
    """A cut between two elements of a message (after the map's header, after a key, after a whole
    pair) used to be taken for the end of a message: no problem, and no reply to a socket client."""
    whole = packed({"op": "released", "group": "g", "shards": {"t": [1, 2]}})
    for cut in range(1, len(whole)):
        _, out = feed_all([packed({"op": "status"}) + whole[:cut]])
        assert codes(out) == ["status", f"!{TRUNCATED}"], cut
    _, out = feed_all([packed({"op": "status"}) + whole])
    assert codes(out) == ["status", "released"]


def test_json_lines_in_a_msgpack_stream_are_named_one_report_per_line() -> None:
    """A stream whose first byte is non-ASCII is MessagePack for good; JSON lines after it used to
    decode as integers and, after the first report, vanish silently."""
    decoder = ControlDecoder()
    out = decoder.feed(packed({"op": "status"}))
    out += decoder.feed(line({"op": "heartbeat"}) + line({"op": "reload"}))
    out += decoder.feed(packed({"op": "stop"}) + b"[1, 2")
    out += decoder.feed(b"]\n" + packed({"op": "status"}))
    assert codes(out) == ["status", "!InvalidMsgpack", "!InvalidMsgpack", "stop", "!InvalidMsgpack", "status"]
    problems = [i for i in out if isinstance(i, ControlProblem)]
    assert "JSON line in a MessagePack stream" in problems[0].message
    assert '\\"heartbeat\\"' in problems[0].message and "0x81" in problems[0].message
    assert "[1, 2]" in problems[2].message


def test_json_lines_after_a_stray_non_ascii_first_byte_are_each_reported() -> None:
    lines = b"".join(line({"op": "status"}) for _ in range(3))
    decoder, out = feed_all([b"\xff" + lines])
    assert decoder.mode == "msgpack"
    assert codes(out) == ["!InvalidMessage"] + ["!InvalidMsgpack"] * 3
    _, split = feed_all([bytes([b]) for b in b"\xff" + lines])
    assert codes(split) == codes(out)
    _, unterminated = feed_all([packed({"op": "status"}) + b'{"op": "stop"}'])
    assert codes(unterminated) == ["status", "!InvalidMsgpack"]
