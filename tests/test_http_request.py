"""encode_request: the joined fast path gives the bytes the header-by-header path gives, and anything
unusual is refused exactly as http.client refuses it."""

from __future__ import annotations

import http.client

import pytest

from shardbeat.runtime import http_request
from shardbeat.runtime.http_request import encode_request

HEADERS = (
    ("Host", "127.0.0.1:8099"),
    ("Content-Type", "application/json"),
    ("Content-Length", "5"),
    ("Date", "Tue, 01 Dec 2026 04:00:00 GMT"),
    ("Authorization", "LOG key:c2lnbmF0dXJl"),
)


def reference(method: str, target: str, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
    """What http.client puts on the wire for these (request line, one line per header, blank line)."""
    lines = [f"{method} {target} HTTP/1.1".encode("ascii")]
    lines += [n.encode("ascii") + b": " + v.encode("latin-1") for n, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def test_the_usual_request_is_the_bytes_http_client_sends_first_time_and_after() -> None:
    http_request._GOOD_NAMES.clear()
    for _ in range(3):  # the first call checks the names one by one, later ones join at once
        assert encode_request("POST", "/a?b=c", HEADERS, b"[0,1]") == reference(
            "POST", "/a?b=c", HEADERS, b"[0,1]"
        )
    assert {"Host", "Authorization"} <= http_request._GOOD_NAMES


def test_latin1_values_folded_values_and_a_proxy_authorization_are_encoded_as_before() -> None:
    headers = (*HEADERS, ("X-Name", "caf\xe9"), ("X-Folded", "a\r\n b"))
    got = encode_request("GET", "http://h/p", headers, b"", "Basic dTpw")
    assert got == reference("GET", "http://h/p", (*headers, ("Proxy-Authorization", "Basic dTpw")), b"")


@pytest.mark.parametrize(
    ("headers", "error", "text"),
    [
        ((("X-Token", "abc\r\nInjected: 1"),), ValueError, "Invalid header value b'abc\\r\\nInjected: 1'"),
        ((("X-Token", "abc\n"),), ValueError, "Invalid header value b'abc\\n'"),
        ((("X-Token", "abc\r"),), ValueError, "Invalid header value b'abc\\r'"),
        ((("Bad:Name", "v"),), ValueError, "Invalid header name b'Bad:Name'"),
        (((" Lead", "v"),), ValueError, "Invalid header name b' Lead'"),
        ((("", "v"),), ValueError, "Invalid header name b''"),
        ((("N\xe4me", "v"),), UnicodeEncodeError, "'ascii' codec"),
        ((("X-Euro", "\u20ac"),), UnicodeEncodeError, "'latin-1' codec"),
    ],
)
def test_bad_headers_are_refused_as_http_client_refuses_them_even_after_good_requests(
    headers: tuple[tuple[str, str], ...], error: type[Exception], text: str
) -> None:
    encode_request("POST", "/", HEADERS, b"")  # the good names are known by now
    with pytest.raises(error) as raised:
        encode_request("POST", "/", (*HEADERS, *headers), b"")
    assert text in str(raised.value)


def test_a_non_ascii_target_or_control_characters_are_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        encode_request("GET", "/caf\xe9", HEADERS, b"")
    with pytest.raises(http.client.InvalidURL):
        encode_request("GET", "/a b", HEADERS, b"")
    with pytest.raises(ValueError, match="method can't contain control characters"):
        encode_request("GE\nT", "/", HEADERS, b"")
