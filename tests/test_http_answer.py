"""The sans-I/O answer parser of the event-loop transport: byte-level cases, each fed whole, split at every
byte boundary and one byte at a time, with http.client as the witness for valid answers."""

from __future__ import annotations

import http.client
import io

import pytest

from shardbeat.providers.base import HttpResponse
from shardbeat.runtime.http_answer import MAX_HEAD_BYTES, AnswerParser
from shardbeat.runtime.transport_errors import MAX_RESPONSE_BYTES, TransportError


def feed_all(pieces: list[bytes], eof: bool = False) -> tuple[HttpResponse | None, AnswerParser]:
    parser = AnswerParser()
    found: HttpResponse | None = None
    for piece in pieces:
        got = parser.feed(piece)
        if got is not None:
            assert found is None, "an answer is returned once"
            found = got
    if eof:
        got = parser.eof()
        if got is not None:
            assert found is None
            found = got
    return found, parser


def splits(data: bytes) -> list[list[bytes]]:
    """The data whole, cut in two at every boundary, and byte by byte."""
    out = [[data]] + [[data[:i], data[i:]] for i in range(1, len(data))]
    out.append([data[i : i + 1] for i in range(len(data))])
    return out


def parse_every_way(data: bytes, eof: bool = False) -> tuple[HttpResponse, AnswerParser]:
    results = []
    for pieces in splits(data):
        found, parser = feed_all(pieces, eof)
        assert found is not None, pieces
        results.append((found, parser.keep_alive, parser.leftover))
    assert all(r == results[0] for r in results), "the answer depends on how the bytes arrived"
    return feed_all([data], eof)  # type: ignore[return-value]


def fails_every_way(data: bytes, eof: bool = False) -> TransportError:
    errors = []
    for pieces in splits(data):
        with pytest.raises(TransportError) as caught:
            feed_all(pieces, eof)
        errors.append((caught.value.code, caught.value.message))
    assert len(set(errors)) == 1, set(errors)
    with pytest.raises(TransportError) as caught:
        feed_all([data], eof)
    return caught.value


def witness(data: bytes) -> HttpResponse:
    """What http.client makes of the same bytes (less the trailing blanks of a value, which it keeps and
    RFC 9110 5.5 says are not part of it)."""

    class Sock:
        def makefile(self, mode: str) -> io.BufferedReader:
            return io.BufferedReader(io.BytesIO(data))

    raw = http.client.HTTPResponse(Sock())  # type: ignore[arg-type]
    raw.begin()
    return HttpResponse(raw.status, {n.lower(): v.strip() for n, v in raw.getheaders()}, raw.read())


VALID = {
    "content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nDate: Sun, 06 May 2018 09:44:10 GMT\r\n\r\n[1]"
    ),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\n[1,\r\n3\r\n 2]\r\n0\r\n\r\n"
    ),
    "no reason": b"HTTP/1.1 500\r\nContent-Length: 2\r\nX-Log-Requestid: abc\r\n\r\n{}",
    "empty 204": b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n",
    "100 continue first": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]",
    "http/1.0 keep-alive": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n[]",
    "upper and mixed case": b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 2\r\nx-Acs-Thing:  v  \r\n\r\n[]",
}


@pytest.mark.parametrize("name", list(VALID))
def test_valid_answers_read_as_http_client_reads_them(name: str) -> None:
    data = VALID[name]
    answer, parser = parse_every_way(data)
    assert answer == witness(data)
    assert parser.reusable


def test_an_answer_delimited_by_the_close() -> None:
    data = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[0, 1]"
    answer, parser = parse_every_way(data, eof=True)
    assert answer == witness(data) and answer.body == b"[0, 1]"
    assert not parser.reusable and not parser.keep_alive
    nothing_yet = AnswerParser()
    assert nothing_yet.feed(data) is None  # no length: only the close ends it


@pytest.mark.parametrize(
    ("head", "keep"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\n", False),
        (b"HTTP/1.1 200 OK\r\n", True),
        (b"HTTP/1.0 200 OK\r\n", False),
        (b"HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\n", True),
        (b"HTTP/1.0 200 OK\r\nProxy-Connection: keep-alive\r\n", True),
    ],
)
def test_connection_reuse_follows_the_version_and_connection_header(head: bytes, keep: bool) -> None:
    answer, parser = parse_every_way(head + b"Content-Length: 2\r\n\r\n[]")
    assert answer.body == b"[]" and parser.reusable is keep


def test_interim_answers_are_skipped_and_101_is_refused() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"
    )
    answer, _ = parse_every_way(data)
    assert (answer.status, answer.body, dict(answer.headers)) == (200, b"[]", {"content-length": "2"})
    error = fails_every_way(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n")
    assert error.code == "InvalidHTTP"


def test_bare_lf_line_ends_obs_fold_and_repeated_headers() -> None:
    answer, _ = parse_every_way(b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\nX-B: one\n\t two\nX-A: 2\n\n[]")
    assert answer.body == b"[]"
    assert answer.headers["x-a"] == "1, 2" and answer.headers["x-b"] == "one two"


def test_bytes_after_the_answer_keep_the_connection_from_reuse() -> None:
    answer, parser = feed_all([VALID["content-length"] + b"HTTP/1.1 200 OK\r\n"])
    assert answer is not None and answer.body == b"[1]"
    assert parser.leftover and not parser.reusable
    answer, parser = feed_all([VALID["content-length"], b"x"])
    assert answer is not None and not parser.reusable
    answer, parser = feed_all([VALID["chunked"] + b"junk"])
    assert answer is not None and answer.body == b"[1, 2]" and not parser.reusable


def test_both_framings_use_chunked_and_close_the_connection() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n"
    answer, parser = parse_every_way(data)
    assert answer.body == b"[]" and not parser.reusable


def test_chunk_trailers_are_read_and_dropped() -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\nX-Trailer: 1\r\n\r\n"
    answer, parser = parse_every_way(data)
    assert answer.body == b"[]" and "x-trailer" not in answer.headers and parser.reusable


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n[]", "InvalidHTTP", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n[]", "InvalidHTTP", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n[]", "InvalidHTTP", "invalid Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]",
            "InvalidHTTP",
            "conflicting Content-Length values (2, 3)",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 20\r\n\r\n[]", "InvalidHTTP", "conflicting Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2,\r\n\r\n[]", "InvalidHTTP", "conflicting Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n[]", "InvalidHTTP", "invalid Content-Length"),
        (
            f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_RESPONSE_BYTES + 1}\r\n\r\n".encode(),
            "ResponseTooLarge",
            "over",
        ),
        (  # past Python's int() digit limit: still a framing verdict, never a ValueError
            b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 5000 + b"\r\n\r\n",
            "ResponseTooLarge",
            "over",
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "InvalidHTTP", "BadStatusLine: SSH-2.0-OpenSSH_9.6"),
        (b"HTTP/1.1 two hundred OK\r\n\r\n", "InvalidHTTP", "BadStatusLine"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "InvalidHTTP", "BadStatusLine"),
        (b"HTTP/1.1 099 OK\r\n\r\n", "InvalidHTTP", "BadStatusLine"),
        (b"HTTP/2 200 OK\r\n\r\n", "InvalidHTTP", "UnknownProtocol"),
        (b"\r\n", "InvalidHTTP", "BadStatusLine"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "InvalidHTTP", "malformed header"),
        (b"HTTP/1.1 200 OK\r\n: no name\r\n\r\n", "InvalidHTTP", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "InvalidHTTP", "malformed header"),
        (b"HTTP/1.1 200 OK\r\n folded: first\r\n\r\n", "InvalidHTTP", "continuation"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "InvalidHTTP", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n[]", "InvalidHTTP", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]XX", "InvalidHTTP", "no CRLF"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\rX", "InvalidHTTP", "no CRLF"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 2000,
            "InvalidHTTP",
            "too long",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % (MAX_RESPONSE_BYTES + 1),
            "ResponseTooLarge",
            "over",
        ),
    ],
)
def test_broken_answers_fail_with_the_transports_codes(data: bytes, code: str, words: str) -> None:
    error = fails_every_way(data)
    assert error.code == code and words in error.message, error.message


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b"", "ConnectionReset", "without an answer"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n[0,1",
            "InvalidHTTP",
            "answer cut short (IncompleteRead)",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Len", "InvalidHTTP", "cut short"),
        (b"HTTP/1.1 200", "InvalidHTTP", "cut short"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[0", "InvalidHTTP", "cut short"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n", "InvalidHTTP", "cut short"),
    ],
)
def test_a_close_before_the_answer_is_whole_is_an_error(data: bytes, code: str, words: str) -> None:
    for pieces in splits(data) if data else [[]]:
        with pytest.raises(TransportError) as caught:
            feed_all(pieces, eof=True)
        assert caught.value.code == code and words in caught.value.message


def test_received_tells_whether_the_peer_said_anything() -> None:
    parser = AnswerParser()
    assert parser.received == 0 and not parser.in_body
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n[")
    assert parser.received > 0 and parser.in_body


def test_oversize_bodies_and_heads_fail_before_the_whole_arrives() -> None:
    parser = AnswerParser()
    parser.feed(b"HTTP/1.0 200 OK\r\n\r\n")
    with pytest.raises(TransportError) as caught:
        for _ in range(MAX_RESPONSE_BYTES // 65536 + 2):
            parser.feed(b"x" * 65536)
    assert caught.value.code == "ResponseTooLarge"
    parser = AnswerParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(TransportError) as caught:
        for _ in range(MAX_HEAD_BYTES // 1000 + 2):
            parser.feed(b"X-Pad: " + b"p" * 991 + b"\r\n")
    assert caught.value.code == "InvalidHTTP" and "head over" in caught.value.message
    parser = AnswerParser()
    with pytest.raises(TransportError) as caught:
        parser.feed(b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n")
    assert "more than 100 headers" in caught.value.message
    with pytest.raises(TransportError) as caught:  # an endless status line
        AnswerParser().feed(b"H" * (MAX_HEAD_BYTES + 1))
    assert caught.value.code == "InvalidHTTP"
    parser = AnswerParser()  # endless interim answers count against the head too
    with pytest.raises(TransportError):
        for _ in range(MAX_HEAD_BYTES // 20):
            parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n")


def test_a_status_line_echoing_a_secret_is_masked() -> None:
    from shardbeat.core.redaction import register_secret

    register_secret("status-line-secret-1")
    with pytest.raises(TransportError) as caught:
        AnswerParser().feed(b"SPDY status-line-secret-1\r\n")
    assert "status-line-secret-1" not in caught.value.message


def test_a_content_length_with_thousands_of_leading_zeros_is_still_its_value() -> None:
    answer, _ = feed_all([b"HTTP/1.1 200 OK\r\nContent-Length: " + b"0" * 5000 + b"2\r\n\r\n[]"])
    assert answer is not None and answer.body == b"[]"


def _coded(coding: str, body: bytes, framing: str = "length") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: {coding}\r\n"
    if framing == "chunked":
        chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunk
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _compress(coding: str, data: bytes) -> bytes:
    import gzip
    import zlib

    if coding in ("gzip", "x-gzip"):
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    raw = zlib.compressobj(wbits=-15)  # raw deflate, as some servers send for "deflate"
    return raw.compress(data) + raw.flush()


@pytest.mark.parametrize(
    ("coding", "packing", "framing"),
    [
        ("gzip", "gzip", "length"),
        ("x-gzip", "x-gzip", "chunked"),
        ("deflate", "deflate", "length"),
        ("deflate", "raw", "chunked"),
        ("GZIP, identity", "gzip", "length"),
    ],
)
def test_a_compressed_body_is_read_decoded(coding: str, packing: str, framing: str) -> None:
    """No request asks for a coding, yet without Accept-Encoding any is acceptable (RFC 9110 12.5.3):
    a gzip or deflate body is the JSON it decodes to, not bytes that "are not JSON"."""
    content = b'{"Response": {"RequestId": "r-1", "Groups": [1, 2, 3]}}' * 20
    answer, _ = parse_every_way(_coded(coding, _compress(packing, content), framing))
    assert answer.body == content


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (_coded("br", b"\x0b\x02\x80[]\x03"), "InvalidHTTP", "content coding shardbeat does not decode (br)"),
        (_coded("gzip, gzip", b"x"), "InvalidHTTP", "does not decode (gzip, gzip)"),
        (_coded("gzip", b"not gzip at all"), "InvalidHTTP", "not valid gzip"),
        (_coded("gzip", _compress("gzip", b"[1, 2, 3]" * 50)[:-12]), "InvalidHTTP", "gzip body is cut short"),
        # a body that decodes past the limit (a "zip bomb") fails as an oversize answer would
        (_coded("gzip", _compress("gzip", b"0" * (MAX_RESPONSE_BYTES + 1))), "ResponseTooLarge", "over"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n",
            "InvalidHTTP",
            "transfer coding shardbeat does not decode (gzip, chunked)",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n[]", "InvalidHTTP", "transfer coding"),
    ],
)
def test_codings_that_cannot_be_read_fail_naming_them(data: bytes, code: str, words: str) -> None:
    """A transfer coding other than chunked, or a content coding that is not gzip or deflate: an error
    that names it (the coded bytes were read as the content, which the providers then called "not
    JSON", or worse, read as JSON)."""
    error = fails_every_way(data, eof=True) if len(data) < 2000 else _fails_whole(data)
    assert error.code == code and words in error.message, error.message


def _fails_whole(data: bytes) -> TransportError:
    with pytest.raises(TransportError) as caught:
        feed_all([data], eof=True)
    return caught.value


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 2\r\nContent-Length: 2\r\n",
        b"Content-Length: 2, 2\r\n",
        b"Content-Length: 02 ,2\r\n",
    ],
)
def test_a_content_length_said_twice_alike_is_that_length(head: bytes) -> None:
    """RFC 9110 8.6: the same length repeated (a proxy's artefact) may be read as that one length; it
    failed as "an invalid Content-Length" (the hint: not the log service). The connection is not reused."""
    answer, parser = parse_every_way(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n[]")
    assert answer.body == b"[]" and not parser.reusable
