"""A request's bytes on the wire, for the event-loop transport (runtime/http_loop.py): the request line,
the headers as given (the providers set Host and Content-Length), and the body, in one buffer so one
send carries it all (no Nagle/delayed-ACK stall).

The checks are http.client's own (putrequest/putheader), raising the same exceptions, so a request
that runtime/transport.py refuses is refused here with the same TransportError (transport_errors):
a header value holding a line break is a ValueError whose quoted value the classification masks.
"""

from __future__ import annotations

import re

# As http.client: a header name is a token without ':' or whitespace; a value may not hold a bare
# CR or LF (a folded line, CRLF + SP/HT, is what the regex lets through, as http.client does).
_legal_name = re.compile(rb"[^:\s][^:\r\n]*").fullmatch
_illegal_value = re.compile(rb"\n(?![ \t])|\r(?![ \t\n])").search
_bad_target = re.compile("[\x00-\x20\x7f]").search
_bad_method = re.compile("[\x00-\x1f]").search


# Header names that passed the check: a provider sends the same dozen on every call, so each is checked
# once. Bounded, in case some caller invents names without end.
_GOOD_NAMES: set[str] = set()
_MAX_GOOD_NAMES = 256


def encode_request(
    method: str,
    target: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    proxy_authorization: str | None = None,
) -> bytes:
    """The bytes of one HTTP/1.1 request. `target` is origin-form, or absolute-form through a proxy,
    which also gets `proxy_authorization` as Proxy-Authorization."""
    found = _bad_method(method)
    if found:
        raise ValueError(
            f"method can't contain control characters. {method!r} (found at least {found.group()!r})"
        )
    found = _bad_target(target)
    if found:
        import http.client  # lazy: its import (and the email package's) costs ~5 ms at start

        raise http.client.InvalidURL(
            f"URL can't contain control characters. {target!r} (found at least {found.group()!r})"
        )
    pairs = (
        headers if proxy_authorization is None else (*headers, ("Proxy-Authorization", proxy_authorization))
    )
    # The usual request (ASCII throughout, names seen before, no line break in a value) is joined and
    # encoded at once; anything else takes the header-by-header path, which raises as http.client does.
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in pairs:
        if name not in _GOOD_NAMES or "\r" in value or "\n" in value:
            return _encode_checked(lines[0], pairs, body)
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    text = "\r\n".join(lines)
    if not text.isascii():
        return _encode_checked(lines[0], pairs, body)
    return text.encode("ascii") + body


def _encode_checked(request_line: str, pairs: tuple[tuple[str, str], ...], body: bytes) -> bytes:
    """Header by header with http.client's checks (putrequest/putheader): its exceptions, its encodings."""
    lines = [request_line.encode("ascii")]
    for name, value in pairs:
        raw_name = name.encode("ascii")
        if not _legal_name(raw_name):
            raise ValueError(f"Invalid header name {raw_name!r}")
        raw_value = value.encode("latin-1")
        if _illegal_value(raw_value):
            raise ValueError(f"Invalid header value {raw_value!r}")
        lines.append(raw_name + b": " + raw_value)
        if len(_GOOD_NAMES) < _MAX_GOOD_NAMES:
            _GOOD_NAMES.add(name)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
