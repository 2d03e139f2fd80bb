"""An HTTP/1.1 answer read incrementally from bytes: sans-I/O, in the spirit of h11, for the event loop
(runtime/http_loop.py).

`feed(data)` as bytes arrive and `eof()` when the peer closes; either returns the complete HttpResponse
once it is whole (None until then) or raises TransportError with the codes runtime/transport.py gives
for the same fault (InvalidHTTP for broken framing, ResponseTooLarge over MAX_RESPONSE_BYTES).

Why not http.client: its header block goes through the email package's parser, the largest single
cost of a heartbeat in a busy process. Here the head is one decode, one split and a partition per
line. Stricter than http.client where it guessed: a head cut off by the close, a chunk framing error,
bytes after the answer are errors (or, for the last, a connection not reused), never a silently
short answer. Every 1xx interim answer is skipped (http.client skipped only 100 and returned a 103
as the answer, leaving the real one to the next call on the connection).
"""

from __future__ import annotations

from shardbeat.core.redaction import clip
from shardbeat.providers.base import HttpResponse
from shardbeat.runtime.transport_errors import MAX_RESPONSE_BYTES, TransportError

MAX_HEAD_BYTES = 64 * 1024  # status line and headers (interim 1xx answers included)
MAX_HEADERS = 100  # as http.client
_MAX_CHUNK_LINE = 1024  # a chunk-size line with its extensions, or one trailer line
_HEX = b"0123456789abcdefABCDEF"
_NO_BODY = frozenset({204, 304})

_HEAD, _LENGTH, _CHUNKED, _CLOSE, _DONE = range(5)
_SIZE, _DATA, _DATA_END, _TRAILER = range(4)  # where in a chunked body


def _invalid(message: str) -> TransportError:
    return TransportError("InvalidHTTP", message)


def _too_large() -> TransportError:
    return TransportError("ResponseTooLarge", f"answer body over {MAX_RESPONSE_BYTES} bytes")


def _cut_short() -> TransportError:
    return _invalid("answer cut short (IncompleteRead)")  # transport.py's words for a short body


def _codings(header: str) -> list[str]:
    """The codings a Transfer-Encoding or Content-Encoding lists, in order, "identity" left out."""
    return [c for c in (part.strip(" \t").lower() for part in header.split(",")) if c and c != "identity"]


def _shown(header: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in clip(header, 60))


def _blank_line(buf: bytearray, start: int) -> tuple[int, int]:
    """(index of the newline that ends the head, length of the blank line after it), or (-1, 0).
    Lines may end in CRLF or a bare LF (RFC 9112 2.2 lets a recipient accept either)."""
    crlf = buf.find(b"\n\r\n", start)
    lf = buf.find(b"\n\n", start)
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, 2
    return (crlf, 3) if crlf >= 0 else (-1, 0)


class AnswerParser:
    """One answer on one connection. `received` counts the bytes fed (0: the peer said nothing,
    which is what makes a failed call on a reused connection safe to retry)."""

    __slots__ = (
        "_body",
        "_buf",
        "_chunk",
        "_head_bytes",
        "_need",
        "_scan",
        "_state",
        "_status",
        "_version",
        "headers",
        "keep_alive",
        "leftover",
        "received",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = _HEAD
        self._scan = 0  # where the search for the end of the head resumes
        self._status = 0  # the status line's code, once it was checked
        self._version = 11
        self._head_bytes = 0
        self._need = 0  # body bytes still expected (Content-Length, or the current chunk)
        self._chunk = _SIZE
        self._body = bytearray()
        self.headers: dict[str, str] = {}
        self.keep_alive = True  # valid once the answer is complete
        self.leftover = False  # bytes came after the answer: the connection is out of step
        self.received = 0

    @property
    def in_body(self) -> bool:
        """The head was read: a timeout now is the body's."""
        return self._state != _HEAD

    @property
    def reusable(self) -> bool:
        """Whether the connection may carry another call after this complete answer."""
        return self._state == _DONE and self.keep_alive and not self.leftover

    def feed(self, data: bytes) -> HttpResponse | None:
        if not data:
            return None
        self.received += len(data)
        if self._state == _DONE:
            self.leftover = True
            return None
        self._buf += data
        return self._advance()

    def eof(self) -> HttpResponse | None:
        """The peer closed the connection: the close-delimited body ends here; anything else
        incomplete is an error."""
        if self._state == _CLOSE:
            self.keep_alive = False
            return self._finish(bytes(self._body))
        if self._state == _DONE:
            return None
        if self._state == _HEAD:
            if self.received == 0:
                raise TransportError("ConnectionReset", "connection closed by the server without an answer")
            raise _invalid("answer cut short (before the end of its head)")
        raise _cut_short()

    def _advance(self) -> HttpResponse | None:
        if self._state == _HEAD and not self._head():
            return None
        state = self._state
        if state == _LENGTH:
            buf = self._buf
            if len(buf) < self._need:
                return None
            self.leftover = len(buf) > self._need
            return self._finish(bytes(buf[: self._need]))
        if state == _CHUNKED:
            return self._chunked()
        if state == _CLOSE:
            self._body += self._buf
            self._buf.clear()
            if len(self._body) > MAX_RESPONSE_BYTES:
                raise _too_large()
            return None
        return self._finish(b"")  # _DONE straight from the head: a body-less answer

    def _finish(self, body: bytes) -> HttpResponse:
        self._state = _DONE
        self._buf = bytearray()
        if body and "content-encoding" in self.headers:
            body = self._decoded(body)
        return HttpResponse(self._status, self.headers, body)

    def _decoded(self, body: bytes) -> bytes:
        """The body without its content coding. No request asks for one (no Accept-Encoding), but
        without that header any coding is acceptable (RFC 9110 12.5.3): gzip and deflate are decoded,
        within MAX_RESPONSE_BYTES decoded; another coding is an error that names it, never its bytes
        read as JSON."""
        header = self.headers["content-encoding"]
        codings = _codings(header)
        if not codings:
            return body
        if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
            raise _invalid(f"answer has a content coding shardbeat does not decode ({_shown(header)})")
        import zlib  # lazy: almost no answer is compressed

        failure = ""
        # gzip (or zlib: 32 + 15 detects either); deflate is zlib-wrapped, raw deflate as some servers send
        for wbits in (47,) if codings[0] != "deflate" else (15, -15):
            decoder = zlib.decompressobj(wbits)
            try:
                decoded = decoder.decompress(body, MAX_RESPONSE_BYTES + 1)
            except zlib.error as exc:
                failure = str(exc)
                continue
            if len(decoded) > MAX_RESPONSE_BYTES or decoder.unconsumed_tail:
                raise _too_large()
            if not decoder.eof:
                raise _invalid(f"answer's {codings[0]} body is cut short")
            return decoded
        raise _invalid(f"answer's body is not valid {codings[0]} ({clip(failure, 60)})")

    # -- the head ----------------------------------------------------------------------------------

    def _head(self) -> bool:
        """Parse status line and headers once they are all here; False while more is needed."""
        buf = self._buf
        while True:
            if not self._status:
                newline = buf.find(b"\n", self._scan)
                if newline < 0:
                    self._check_head_size(len(buf))
                    self._scan = len(buf)  # a trickled line is searched once, not once per byte
                    return False
                self._status_line(buf[:newline])  # early, so garbage fails at its first line
                self._scan = newline  # the blank line may start at the status line's own end
            end, blank = _blank_line(buf, self._scan)
            if end < 0:
                self._check_head_size(len(buf))
                self._scan = max(0, len(buf) - 2)
                return False
            self._check_head_size(end + blank)
            self._head_bytes += end + blank
            lines = buf[:end].decode("latin-1").split("\n")
            del buf[: end + blank]
            self._scan = 0
            if 100 <= self._status < 200:
                if self._status == 101:
                    raise _invalid("answer switched protocols (101), which no request asked for")
                self._status = 0  # an interim answer (100 Continue, 103 Early Hints): the real one follows
                continue
            self._headers(lines)
            self._framing()
            return True

    def _check_head_size(self, size: int) -> None:
        if self._head_bytes + size > MAX_HEAD_BYTES:
            raise _invalid(f"answer head over {MAX_HEAD_BYTES} bytes")

    def _status_line(self, raw: bytearray) -> None:
        line = raw.decode("latin-1").rstrip("\r")
        parts = line.split(None, 2)
        version = parts[0] if parts else ""
        code = parts[1] if len(parts) > 1 else ""
        if not version.startswith("HTTP/") or len(code) != 3 or not (code.isascii() and code.isdigit()):
            shown = "".join(ch if ch.isprintable() else " " for ch in clip(line, 100))
            raise _invalid(f"BadStatusLine: {shown}" if line else "BadStatusLine: an empty status line")
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self._version = 10
        elif not version.startswith("HTTP/1."):
            raise _invalid(f"UnknownProtocol: {clip(version, 20)}")
        self._status = int(code)
        if self._status < 100:
            raise _invalid(f"BadStatusLine: status {code}")

    def _headers(self, lines: list[str]) -> None:
        headers: dict[str, str] = {}
        last = ""
        if len(lines) > MAX_HEADERS + 1:
            raise _invalid(f"got more than {MAX_HEADERS} headers")
        for line in lines[1:]:
            if line.endswith("\r"):
                line = line[:-1]
            if line[:1] in (" ", "\t"):  # obs-fold: a continuation of the previous value
                if not last:
                    raise _invalid("answer head starts with a continuation line")
                headers[last] = (headers[last] + " " + line.strip(" \t")).strip()
                continue
            name, colon, value = line.partition(":")
            name = name.strip(" \t").lower()
            if not colon or not name or " " in name or "\t" in name:
                raise _invalid("answer has a malformed header line")
            value = value.strip(" \t")
            if name in headers:  # repeated: one comma-joined value (a doubled Content-Length is then invalid)
                value = f"{headers[name]}, {value}"
            headers[name] = value
            last = name
        self.headers = headers

    def _framing(self) -> None:
        """How the body is delimited (RFC 9112 6.3), and whether the connection outlives the answer."""
        headers = self.headers
        connection = headers.get("connection", "").lower()
        if self._version == 11:
            self.keep_alive = "close" not in connection
        else:  # HTTP/1.0 keeps the connection only when it says so (http.client's rules)
            self.keep_alive = bool(
                "keep-alive" in headers
                or "keep-alive" in connection
                or "keep-alive" in headers.get("proxy-connection", "").lower()
            )
        coding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if self._status in _NO_BODY:
            self._state = _DONE
        elif coding is not None:
            if length is not None:
                self.keep_alive = False  # both framings: a smuggling shape; never reuse the connection
            codings = _codings(coding)
            if codings[:-1] or (codings and codings[-1] != "chunked"):  # gzip, chunked; gzip alone
                # Its bytes are not the content: read as such, they made a misleading "not JSON".
                raise _invalid(f"answer has a transfer coding shardbeat does not decode ({_shown(coding)})")
            if codings:
                self._state = _CHUNKED
            else:
                self._state = _CLOSE
                self.keep_alive = False
        elif length is not None:
            length = length.strip(" \t")
            if "," in length:  # repeated (joined by _headers) or a list: one length said again (RFC 9110 8.6)
                values = {value.strip(" \t") for value in length.split(",")}
                if len({(v.lstrip("0") or "0") if v.isascii() and v.isdigit() else v for v in values}) > 1:
                    shown = _shown(", ".join(sorted(values)))
                    raise _invalid(f"answer has conflicting Content-Length values ({shown})")
                length = values.pop()
                self.keep_alive = False  # a proxy's artefact at best: this connection is not reused
            if not (length.isascii() and length.isdigit()):
                raise _invalid("answer has an invalid Content-Length")
            # Measured by its digits before int(): Python refuses to convert over 4300 digits
            # (a ValueError, not a framing error), and no such length could be under the limit anyway.
            digits = length.lstrip("0") or "0"
            if len(digits) > len(str(MAX_RESPONSE_BYTES)) or int(digits) > MAX_RESPONSE_BYTES:
                raise _too_large()
            self._need = int(digits)
            self._state = _LENGTH
        else:
            self._state = _CLOSE
            self.keep_alive = False

    # -- chunked bodies ----------------------------------------------------------------------------

    def _chunked(self) -> HttpResponse | None:
        buf, pos, size = self._buf, 0, len(self._buf)
        try:
            while pos < size:
                step = self._chunk
                if step == _DATA:
                    take = min(self._need, size - pos)
                    self._body += buf[pos : pos + take]
                    pos += take
                    self._need -= take
                    if self._need:
                        return None
                    self._chunk = _DATA_END
                elif step == _DATA_END:
                    if buf[pos] == 0x0A:  # a bare LF
                        pos += 1
                    elif buf[pos] == 0x0D and pos + 1 < size:
                        if buf[pos + 1] != 0x0A:
                            raise _invalid("answer has invalid chunked framing (no CRLF after a chunk)")
                        pos += 2
                    elif buf[pos] == 0x0D:
                        return None
                    else:
                        raise _invalid("answer has invalid chunked framing (no CRLF after a chunk)")
                    self._chunk = _SIZE
                else:
                    newline = buf.find(b"\n", pos)
                    if newline < 0:
                        if size - pos > _MAX_CHUNK_LINE:
                            raise _invalid("answer has invalid chunked framing (a line too long)")
                        return None
                    line = bytes(buf[pos:newline]).rstrip(b"\r")
                    pos = newline + 1
                    if step == _TRAILER:
                        if not line:
                            self.leftover = pos < size
                            return self._finish(bytes(self._body))
                        self._head_bytes += len(line)  # trailers count against the head's budget
                        self._check_head_size(0)
                        continue
                    digits = line.split(b";", 1)[0].strip(b" \t")
                    if not digits or len(digits) > 16 or digits.translate(None, _HEX):
                        raise _invalid("answer has invalid chunked framing (a bad chunk size)")
                    self._need = int(digits, 16)
                    if len(self._body) + self._need > MAX_RESPONSE_BYTES:
                        raise _too_large()
                    self._chunk = _DATA if self._need else _TRAILER
            return None
        finally:
            if self._state != _DONE:
                del buf[:pos]
