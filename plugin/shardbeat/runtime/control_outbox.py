"""Replies on one control-socket connection: encoded like the client's own stream, written without
ever blocking the socket thread.

The socket thread serves every client, so a reply is sent with a non-blocking `send`; what the
kernel does not take waits here and goes out when the connection is writable again (the server
watches for that while `pending` is set). A client that asks and never reads cannot grow this
without bound: past MAX_PENDING bytes the connection is given up.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from typing import Any, Literal

from shardbeat.core.redaction import SECRETS, masked

log = logging.getLogger("shardbeat.control")

REPLY_NOT_ENCODABLE = "ReplyNotEncodable"
MAX_PENDING = 4 << 20  # a status reply of a few thousand groups fits many times over


def encode_reply(doc: dict[str, Any], mode: Literal["json", "msgpack"] | None) -> bytes:
    """A MessagePack client gets a MessagePack map; everyone else a JSON line. Replies leave the
    process like records do, so they pass the one redaction point too (a status reply quotes the
    last error, which came from a server). A reply that will not encode (a value the format
    cannot carry) becomes a ReplyNotEncodable failure: every message still gets its one reply."""
    try:
        data = _encoded_in_pieces(doc, mode)
    except (ValueError, TypeError, OverflowError) as exc:
        log.warning("control socket: a %s reply could not be encoded (%s)", doc.get("op", "control"), exc)
        kind = type(exc).__name__
        why = f"done, but its reply could not be encoded as {mode or 'json'} ({kind}): see the records"
        failure: dict[str, Any] = {"ok": False, "error": {"code": REPLY_NOT_ENCODABLE, "message": why}}
        if isinstance(doc.get("op"), str):
            failure = {"op": doc["op"], **failure}
        doc = failure
        data = _encoded(doc, mode)
    if SECRETS.found_in(data):
        data = _encoded_in_pieces(masked(doc), mode)
    return data


def _encoded_in_pieces(doc: dict[str, Any], mode: Literal["json", "msgpack"] | None) -> bytes:
    """The same bytes as _encoded, with `groups` encoded an entry at a time: one encoder call over
    a status of thousands of groups (megabytes) would hold the GIL, and so the loop thread, for tens
    of milliseconds; between calls the loop thread gets its turn."""
    entries = doc.get("groups")
    if not isinstance(entries, list) or len(entries) < 2:
        return _encoded(doc, mode)
    if mode == "msgpack":
        import msgpack

        packer = msgpack.Packer(use_bin_type=True, unicode_errors="backslashreplace")
        parts = [packer.pack_map_header(len(doc))]
        for key, value in doc.items():
            parts.append(packer.pack(key))
            if key == "groups":
                parts.append(packer.pack_array_header(len(entries)))
                parts.extend(packer.pack(entry) for entry in entries)
            else:
                parts.append(packer.pack(value))
        return b"".join(parts)
    fields = []
    for key, value in doc.items():
        shown = "[" + ",".join(_json(e) for e in entries) + "]" if key == "groups" else _json(value)
        fields.append(f"{_json(key)}:{shown}")
    return ("{" + ",".join(fields) + "}\n").encode()


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def _encoded(doc: dict[str, Any], mode: Literal["json", "msgpack"] | None) -> bytes:
    if mode == "msgpack":
        import msgpack  # lazy: most clients speak JSON

        packed: bytes = msgpack.packb(doc, use_bin_type=True, unicode_errors="backslashreplace")
        return packed
    # ASCII JSON: valid whatever the client's locale, and a stray surrogate cannot fail the encoding.
    return (_json(doc) + "\n").encode()


class Outbox:
    """Pending reply bytes of one connection. Socket thread only."""

    def __init__(
        self,
        conn: socket.socket,
        mode: Callable[[], Literal["json", "msgpack"] | None],
        on_pending: Callable[[bool], None],
        limit: int | None = None,
    ) -> None:
        self._conn = conn
        self._mode = mode
        self._on_pending = on_pending  # tells the server to watch (or stop watching) for writability
        self._limit = MAX_PENDING if limit is None else limit
        self._buffer = bytearray()
        self.failed = False  # the client is gone or would not read: drop the connection

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def reply(self, doc: dict[str, Any]) -> None:
        if self.failed:
            return
        was_pending = self.pending
        self._buffer += encode_reply(doc, self._mode())
        if len(self._buffer) > self._limit:
            log.warning("control socket: a client does not read its replies; disconnecting it")
            self.failed = True
            self._buffer.clear()
            return
        self.flush()
        if self.pending != was_pending:
            self._on_pending(self.pending)

    def flush(self) -> None:
        """Send what the kernel takes now; a client that is gone sets `failed`."""
        while self._buffer and not self.failed:
            try:
                sent = self._conn.send(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EPIPE, ECONNRESET: the client left without reading
                log.debug("control socket: reply not delivered: %s", exc.strerror or exc)
                self.failed = True
                self._buffer.clear()
                return
            del self._buffer[:sent]
