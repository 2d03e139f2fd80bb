"""Control messages: their type, their validation and an incremental decoder (no I/O here).

A control stream (stdin, or one connection to the control socket) is either JSON lines or a
MessagePack stream of maps. The first non-whitespace byte decides, once per stream: an ASCII byte
means JSON lines (a UTF-8 byte-order mark is skipped), anything else MessagePack (a map starts with
0x80-0x8f, 0xde or 0xdf; no JSON text can start with a non-ASCII byte).

Every message is checked by hand against schemas/control.schema.json (tests/test_control_schema.py
proves the two agree), so each problem gets a specific message. Problems never stop a stream:
- JSON: a bad line is reported and the decoder carries on at the next newline; a line longer than
  MAX_MESSAGE_BYTES is reported once and skipped up to its newline.
- MessagePack has no boundary to resynchronise on: undecodable or oversized input is reported, the
  buffered bytes are dropped and decoding restarts with the next bytes; until a valid message
  arrives again, further problems are counted but not reported (one report per bad patch). A whole
  map that is not a valid message starts no bad patch: its bounds are known, so each such message
  of a stream in step gets its own report (and, on the socket, its reply).
  JSON text in a MessagePack stream (a JSON line's `{` or `[` where a message should start) is
  named as such and skipped up to its newline, one report per line: the stream's format was fixed
  by its first byte, and silently reading JSON lines as MessagePack integers would hide that.
Problem messages quote at most a short, escaped piece of the input (never a whole message).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast, get_args

from shardbeat.core.checkpoints import Checkpoint, ShardKey
from shardbeat.core.json_kind import json_kind
from shardbeat.core.shards import ShardMap, shard_map

Op = Literal["released", "held", "heartbeat", "status", "reload", "stop", "commit"]
OPS: tuple[str, ...] = get_args(Op)
ProviderName = Literal["sls", "cls"]
PROVIDERS: tuple[str, ...] = get_args(ProviderName)

MAX_MESSAGE_BYTES = 64 * 1024
MAX_NAME_CHARS = 255
# Shard ids and epochs are int64 at most (CLS partition ids are int64, SLS shard ids int32): larger
# ones name nothing, and every reply and record that echoes them must still encode as MessagePack.
MAX_INTEGER = 2**63 - 1
_FEED_SLICE = 4096  # msgpack is fed in slices so a full read never counts as one oversized message

# Problem codes (the `error.code` of the error record the runner writes).
INVALID_JSON = "InvalidJson"
INVALID_MSGPACK = "InvalidMsgpack"
INVALID_ENCODING = "InvalidEncoding"
TOO_LARGE = "MessageTooLarge"
TRUNCATED = "TruncatedMessage"
INVALID_MESSAGE = "InvalidMessage"
UNKNOWN_OP = "UnknownOp"

_FIELDS = ("op", "group", "provider", "consumer", "shards", "checkpoints", "epoch", "records")
# Fields an op may carry besides `op` (schema: allOf, `notForOp`).
_ALLOWED: dict[str, frozenset[str]] = {
    "released": frozenset({"group", "provider", "consumer", "shards", "checkpoints", "epoch"}),
    "held": frozenset({"group", "provider", "consumer", "shards"}),
    "heartbeat": frozenset({"group", "provider", "consumer"}),
    "status": frozenset({"records"}),
    "reload": frozenset(),
    "stop": frozenset(),
    "commit": frozenset({"group", "provider", "consumer", "checkpoints", "epoch"}),
}
_NEEDS_GROUP_AND_SHARDS = frozenset({"released", "held"})
_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """One valid control message. `group` None means every group (heartbeat); `provider` and
    `consumer` narrow `group` when several configured groups share its name."""

    op: Op
    group: str | None = None
    provider: ProviderName | None = None
    consumer: str | None = None
    shards: ShardMap | None = None  # released / held only; topics without ids are left out
    # commit, and released (values committed before the release takes effect)
    checkpoints: Mapping[ShardKey, Checkpoint] | None = None
    epoch: int | None = None  # with checkpoints: the epoch downstream's values were made under
    records: bool = True  # status only: also write status records to stdout (false: reply only)


@dataclass(frozen=True, slots=True)
class ControlProblem:
    """Input that is not a valid control message; `code` is one of the codes above."""

    code: str
    message: str


Reply = Callable[[dict[str, Any]], None]


class ControlSink(Protocol):
    """What the readers deliver to (the runner). Called from reader threads: must be thread-safe
    and quick (no network I/O). `reply` answers the connection the message came on (the control
    socket); stdin has none, so its messages are answered by records only."""

    def control(self, message: ControlMessage, reply: Reply | None = None) -> None: ...

    def control_error(self, source: str, code: str, message: str) -> None: ...

    def control_eof(self) -> None: ...


# -- validation ----------------------------------------------------------------------------------


def _show(value: object, limit: int = 40) -> str:
    """A short, one-line, escaped rendering of a piece of input for a problem message."""
    text = json.dumps(value, ensure_ascii=True) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + '..."'


class _Invalid(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _name(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None and key not in doc:
        return None
    if not isinstance(value, str):
        raise _Invalid(INVALID_MESSAGE, f"{key} must be a string, not {json_kind(value)}")
    if not 1 <= len(value) <= MAX_NAME_CHARS:
        raise _Invalid(INVALID_MESSAGE, f"{key} must be 1 to {MAX_NAME_CHARS} characters long")
    return value


def _shard_id(topic: str, value: object) -> int:
    # JSON Schema counts 3.0 as an integer; so do we, to agree with the schema.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(
            INVALID_MESSAGE, f"shards[{_show(topic)}]: shard ids must be integers, not {json_kind(value)}"
        )
    if value < 0:
        raise _Invalid(INVALID_MESSAGE, f"shards[{_show(topic)}]: shard ids must be >= 0")
    if value > MAX_INTEGER:
        raise _Invalid(INVALID_MESSAGE, f"shards[{_show(topic)}]: shard ids must be at most {MAX_INTEGER}")
    return value


def _shards(value: object) -> ShardMap:
    if not isinstance(value, Mapping):
        raise _Invalid(INVALID_MESSAGE, f"shards must be an object {{topic: [ids]}}, not {json_kind(value)}")
    parsed: dict[str, list[int]] = {}
    for topic, ids in value.items():
        if not isinstance(topic, str) or not topic:
            raise _Invalid(INVALID_MESSAGE, "shards: topic names must be non-empty strings")
        if not isinstance(ids, list | tuple):
            raise _Invalid(
                INVALID_MESSAGE, f"shards[{_show(topic)}] must be a list of ids, not {json_kind(ids)}"
            )
        numbers = [_shard_id(topic, v) for v in ids]
        if len(set(numbers)) != len(numbers):
            raise _Invalid(INVALID_MESSAGE, f"shards[{_show(topic)}] lists a shard id twice")
        parsed[topic] = numbers
    return shard_map(parsed)


def message_from(doc: object) -> ControlMessage | ControlProblem:
    """A decoded JSON value or MessagePack object -> a valid message, or the first problem with it."""
    try:
        return _message(doc)
    except _Invalid as exc:
        return ControlProblem(exc.code, str(exc))


def _message(doc: object) -> ControlMessage:
    if not isinstance(doc, Mapping):
        raise _Invalid(INVALID_MESSAGE, f"a control message must be an object, not {json_kind(doc)}")
    if not all(isinstance(key, str) for key in doc):
        raise _Invalid(INVALID_MESSAGE, "field names must be strings")
    if "op" not in doc:
        raise _Invalid(INVALID_MESSAGE, f"missing op (one of {', '.join(OPS)})")
    op = doc["op"]
    if not isinstance(op, str):
        raise _Invalid(INVALID_MESSAGE, f"op must be a string, not {json_kind(op)}")
    if op not in OPS:
        raise _Invalid(UNKNOWN_OP, f"unknown op {_show(op)}; known: {', '.join(OPS)}")
    unknown = sorted(key for key in doc if key not in _FIELDS)
    if unknown:
        raise _Invalid(INVALID_MESSAGE, f"unknown field {_show(unknown[0])}; known: {', '.join(_FIELDS)}")
    extra = sorted(key for key in doc if key != "op" and key not in _ALLOWED[op])
    if extra:
        raise _Invalid(INVALID_MESSAGE, f"op {op} takes no {extra[0]}")
    group = _name(doc, "group")
    consumer = _name(doc, "consumer")
    provider = doc.get("provider")
    if "provider" in doc and provider not in PROVIDERS:
        what = _show(provider) if isinstance(provider, str) else json_kind(provider)
        raise _Invalid(INVALID_MESSAGE, f"provider must be sls or cls, not {what}")
    shards = _shards(doc["shards"]) if "shards" in doc else None
    checkpoints = _checkpoints(doc["checkpoints"]) if "checkpoints" in doc else None
    epoch = _epoch(doc["epoch"]) if "epoch" in doc else None
    needed = (
        ("group", "shards")
        if op in _NEEDS_GROUP_AND_SHARDS
        else ("group", "checkpoints")
        if op == "commit"
        else ()
    )
    missing = [key for key in needed if key not in doc]
    if missing:
        raise _Invalid(INVALID_MESSAGE, f"op {op} needs {' and '.join(missing)}")
    records = doc.get("records", True)
    if not isinstance(records, bool):
        raise _Invalid(INVALID_MESSAGE, f"records must be true or false, not {json_kind(records)}")
    return ControlMessage(
        cast(Op, op),
        group,
        cast(ProviderName | None, provider),
        consumer,
        shards,
        checkpoints,
        epoch,
        records,
    )


def _epoch(value: object) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)  # JSON Schema counts 3.0 as an integer; so do we
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(INVALID_MESSAGE, f"epoch must be an integer >= 0, not {json_kind(value)}")
    if value < 0:
        raise _Invalid(INVALID_MESSAGE, "epoch must be >= 0 (the epoch of a record), not negative")
    if value > MAX_INTEGER:
        raise _Invalid(INVALID_MESSAGE, f"epoch must be at most {MAX_INTEGER} (the epoch of a record)")
    return value


MAX_CHECKPOINT_CHARS = 1024


def _checkpoints(value: object) -> dict[ShardKey, Checkpoint]:
    """{topic: {"<shard id>": value}}: a string (SLS cursor) or a non-negative integer (CLS offset);
    which of the two a group takes is its provider's to check."""
    if not isinstance(value, Mapping):
        raise _Invalid(
            INVALID_MESSAGE,
            f"checkpoints must be an object {{topic: {{shard: value}}}}, not {json_kind(value)}",
        )
    parsed: dict[ShardKey, Checkpoint] = {}
    for topic, values in value.items():
        if not isinstance(topic, str) or not topic:
            raise _Invalid(INVALID_MESSAGE, "checkpoints: topic names must be non-empty strings")
        if not isinstance(values, Mapping):
            raise _Invalid(
                INVALID_MESSAGE,
                f"checkpoints[{_show(topic)}] must be an object {{shard: value}}, not {json_kind(values)}",
            )
        for shard, checkpoint in values.items():
            shard_id = _checkpoint_shard(topic, shard)
            if isinstance(checkpoint, float) and math.isfinite(checkpoint) and checkpoint.is_integer():
                checkpoint = int(checkpoint)  # JSON Schema counts 3.0 as an integer; so do we
            if isinstance(checkpoint, bool) or not isinstance(checkpoint, str | int):
                raise _Invalid(
                    INVALID_MESSAGE,
                    f"checkpoints[{_show(topic)}][{shard_id}] must be a string or an integer, "
                    f"not {json_kind(checkpoint)}",
                )
            if isinstance(checkpoint, str) and not 1 <= len(checkpoint) <= MAX_CHECKPOINT_CHARS:
                raise _Invalid(
                    INVALID_MESSAGE,
                    f"checkpoints[{_show(topic)}][{shard_id}] must be 1 to {MAX_CHECKPOINT_CHARS} characters",
                )
            if isinstance(checkpoint, int) and checkpoint < 0:
                raise _Invalid(INVALID_MESSAGE, f"checkpoints[{_show(topic)}][{shard_id}] must be >= 0")
            if (topic, shard_id) in parsed:
                raise _Invalid(INVALID_MESSAGE, f"checkpoints[{_show(topic)}] names shard {shard_id} twice")
            parsed[(topic, shard_id)] = checkpoint
    return parsed


def _checkpoint_shard(topic: str, shard: object) -> int:
    # JSON object keys are strings; a MessagePack map may use integers.
    if isinstance(shard, str) and shard.isascii() and shard.isdigit() and (shard == "0" or shard[0] != "0"):
        return int(shard)
    if isinstance(shard, int) and not isinstance(shard, bool) and shard >= 0:
        return shard
    # A MessagePack key may be any kind: name a wrong integer by its value, anything else by its kind.
    shown = str(shard) if isinstance(shard, int) and not isinstance(shard, bool) else _show(shard)
    raise _Invalid(
        INVALID_MESSAGE,
        f"checkpoints[{_show(topic)}]: shard ids are non-negative decimal integers, not {shown}",
    )


# -- decoding ------------------------------------------------------------------------------------

Decoded = ControlMessage | ControlProblem


class _Pairs:
    """The decoders' object_pairs_hook: builds each object and remembers a key given twice in one,
    so `{"op": "status", "op": "stop"}` is refused instead of read as whichever came last."""

    def __init__(self) -> None:
        self.twice: list[object] = []

    def __call__(self, pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        doc = dict(pairs)
        if len(doc) != len(pairs) and not self.twice:
            seen: set[object] = set()
            for key, _ in pairs:
                if key in seen:
                    self.twice.append(key)
                    break
                seen.add(key)
        return doc

    def problem(self) -> ControlProblem | None:
        """The key given twice in the document just decoded, if any (and forget it)."""
        if not self.twice:
            return None
        key = self.twice.pop()
        self.twice.clear()
        shown = str(key) if isinstance(key, int) and not isinstance(key, bool) else _show(key)
        return ControlProblem(INVALID_MESSAGE, f"field {shown} is given twice in one object")


class ControlDecoder:
    """Bytes of one stream in, messages and problems out, in order. Pure: feed it what was read."""

    def __init__(self, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.limit = limit
        self.mode: Literal["json", "msgpack"] | None = None
        self._pending = bytearray()  # json: the current partial line
        self._skipping = False  # json: inside an oversized line, dropping up to its newline
        self._unpacker: Any = None
        self._fed = 0  # msgpack: bytes fed to the current unpacker (tell() counts those consumed)
        self._consumed = 0  # msgpack: tell() after the previous message
        self._desynced = False  # msgpack: problems are muted until a valid message arrives
        self.muted = 0  # msgpack problems not reported while desynced
        self._text: bytearray | None = None  # msgpack: the start of a JSON line being skipped
        self._first_byte = 0  # what made this stream MessagePack
        self._pairs = _Pairs()

    def feed(self, data: bytes) -> list[Decoded]:
        if self.mode is None:
            data = self._detect(data)
            if self.mode is None:
                return []
        if self.mode == "json":
            return self._feed_json(data)
        out: list[Decoded] = []
        for start in range(0, len(data), _FEED_SLICE):
            chunk = data[start : start + _FEED_SLICE]
            if self._text is not None:
                chunk = self._skip_text(chunk, out)
            if chunk:
                self._feed_msgpack(chunk, out)
        return out

    def finish(self) -> list[Decoded]:
        """End of the stream: a last line without its newline still counts; a partial
        MessagePack message is reported."""
        out: list[Decoded] = []
        if self.mode == "json" and self._pending and not self._skipping:
            out.append(self._line(bytes(self._pending)))
        elif self._text is not None:
            self._skip_text(b"\n", out)  # a JSON line without its newline: still reported
        elif self.mode == "msgpack" and self._unpacker is not None and self._fed > self._consumed:
            # Bytes fed since the last whole message (tell() is no guide: it counts the parts of a
            # message cut between two of its elements, a map's header and its first pair, as read).
            self._report(
                out, ControlProblem(TRUNCATED, "the stream ended in the middle of a MessagePack message")
            )
        self._pending.clear()
        self._unpacker = None
        return out

    def _detect(self, data: bytes) -> bytes:
        if self._pending:  # a partial byte-order mark from the previous feed
            data = bytes(self._pending) + data
            self._pending.clear()
        rest = data.lstrip(_WHITESPACE)
        if not rest:
            return b""
        if _BOM.startswith(rest[:3]) and len(rest) < 3:
            self._pending += rest
            return b""
        if rest.startswith(_BOM):
            self.mode = "json"
            return rest[3:]
        self.mode = "json" if rest[0] < 0x80 else "msgpack"
        self._first_byte = rest[0]
        return rest

    # -- JSON lines

    def _feed_json(self, data: bytes) -> list[Decoded]:
        out: list[Decoded] = []
        start, end = 0, len(data)
        while start < end:
            newline = data.find(b"\n", start)
            stop = end if newline < 0 else newline
            if self._skipping:
                self._skipping = newline < 0
            elif len(self._pending) + (stop - start) > self.limit:
                self._pending.clear()
                self._skipping = newline < 0
                out.append(ControlProblem(TOO_LARGE, f"a line over {self.limit} bytes was skipped"))
            elif newline < 0:
                self._pending += data[start:stop]
            else:
                line = bytes(self._pending) + data[start:stop] if self._pending else data[start:stop]
                self._pending.clear()
                if line.strip(_WHITESPACE):
                    out.append(self._line(line))
            start = stop + 1
        return out

    def _line(self, line: bytes) -> Decoded:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return ControlProblem(INVALID_ENCODING, "a line is not valid UTF-8")
        self._pairs.twice.clear()
        try:
            doc = json.loads(text, object_pairs_hook=self._pairs)
        except json.JSONDecodeError as exc:
            return ControlProblem(INVALID_JSON, f"not JSON: {exc.msg} at column {exc.colno}")
        except (ValueError, RecursionError):  # integers too long to convert, nesting too deep
            return ControlProblem(
                INVALID_JSON, "not JSON that can be read (number too long or nesting too deep)"
            )
        return self._pairs.problem() or message_from(doc)

    # -- MessagePack

    def _feed_msgpack(self, data: bytes, out: list[Decoded]) -> None:
        import msgpack  # lazy: only MessagePack streams need it

        if self._unpacker is None:
            # Every size limit defaults to max_buffer_size; the slice on top keeps a full buffer
            # meaning one message over the limit, not a read that carried many small ones.
            self._unpacker = msgpack.Unpacker(
                raw=False,
                strict_map_key=False,
                max_buffer_size=self.limit + _FEED_SLICE,
                object_pairs_hook=self._pairs,
            )
            self._pairs.twice.clear()
            self._fed = self._consumed = 0
        try:
            self._unpacker.feed(data)
            self._fed += len(data)
        except msgpack.BufferFull:
            self._unpacker = None
            self._report(
                out, ControlProblem(TOO_LARGE, f"a MessagePack message over {self.limit} bytes was dropped")
            )
            return
        while True:
            try:
                doc = next(self._unpacker)
            except StopIteration:
                return
            except (ValueError, msgpack.UnpackException, TypeError) as exc:
                self._unpacker = None
                reason = type(exc).__name__
                self._report(
                    out, ControlProblem(INVALID_MSGPACK, f"undecodable MessagePack ({reason}); input dropped")
                )
                return
            if isinstance(doc, int) and not isinstance(doc, bool):
                # A single-byte integer just consumed from this chunk: is it a JSON line's start?
                at = self._unpacker.tell() - (self._fed - len(data)) - 1
                if 0 <= at < len(data) and data[at : at + 1] in (b"{", b"["):
                    self._unpacker = None
                    rest = self._skip_text(data[at:], out)
                    if rest:
                        self._feed_msgpack(rest, out)
                    return
            twice = self._pairs.problem()
            size, self._consumed = self._unpacker.tell() - self._consumed, self._unpacker.tell()
            if size > self.limit:
                decoded: Decoded = ControlProblem(
                    TOO_LARGE, f"a MessagePack message over {self.limit} bytes was dropped"
                )
            else:
                decoded = twice or message_from(doc)
            if isinstance(decoded, ControlMessage):
                self._desynced = False
                out.append(decoded)
            else:
                # A whole map is a message whose bounds are known: the next one is answered as well.
                # Anything else (a bare integer, a string) is what garbage decodes to: a bad patch.
                self._report(out, decoded, desync=not isinstance(doc, Mapping))

    def _skip_text(self, data: bytes, out: list[Decoded]) -> bytes:
        """Drop a JSON line up to its newline; report it once the line is over. Returns what follows."""
        if self._text is None:
            self._text = bytearray()
        newline = data.find(b"\n")
        line = data if newline < 0 else data[:newline]
        if len(self._text) < 48:
            self._text += line[: 48 - len(self._text)]
        if newline < 0:
            return b""
        shown = _show(self._text.decode("utf-8", "replace"))
        self._text = None
        out.append(
            ControlProblem(
                INVALID_MSGPACK,
                f"a JSON line in a MessagePack stream was dropped ({shown}): the stream's first byte "
                f"0x{self._first_byte:02x} made it MessagePack for good; send one format per stream",
            )
        )
        return data[newline + 1 :]

    def _report(self, out: list[Decoded], problem: ControlProblem, desync: bool = True) -> None:
        if self._desynced:
            self.muted += 1
            return
        self._desynced = desync
        out.append(problem)
