"""One redaction point: no secret and no header value quoted by an exception reaches a log or record."""

from __future__ import annotations

import html
import http.client
import io
import json
import logging
import socket
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from shardbeat.core.redaction import MASK, describe_exception, redact, register_secret
from shardbeat.providers.base import Credentials, Endpoint, HttpRequest
from shardbeat.runtime.http_loop import HttpLoop
from shardbeat.runtime.logs import JsonFormatter, TextFormatter
from shardbeat.runtime.transport import HttpTransport, TransportError

TOKEN = "sts-token-VALUE-abcdef"


def http_client_header_error(value: str) -> ValueError:
    conn = http.client.HTTPConnection("127.0.0.1", 9)
    conn.putrequest("POST", "/")
    with pytest.raises(ValueError) as caught:
        conn.putheader("x-acs-security-token", value)
    return caught.value


def test_http_clients_invalid_header_message_loses_the_value() -> None:
    error = http_client_header_error("quoted-but-unregistered\n")
    assert "quoted-but-unregistered" in str(error)  # what http.client says...
    described = describe_exception(error)
    assert "quoted-but-unregistered" not in described  # ...and what we pass on
    assert described.startswith("ValueError: Invalid header value")


def test_registered_secrets_are_masked_in_any_text() -> None:
    Credentials("AKID", "secret-KEY-value-1", TOKEN)
    assert redact(f"a {TOKEN} b secret-KEY-value-1 c") == f"a {MASK} b {MASK} c"
    assert redact("short") == "short"
    register_secret("tiny")  # too short to register: would cut words out of every line
    assert redact("tiny words") == "tiny words"


@pytest.mark.parametrize("kind", [HttpTransport, HttpLoop], ids=["http.client", "loop"])
def test_the_transport_boundary_never_passes_a_header_value_on(kind: type[HttpTransport | HttpLoop]) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        transport = kind()
        request = HttpRequest("POST", "/", (("x-acs-security-token", "tok-unregistered-1\n"),), b"{}")
        with pytest.raises(TransportError) as caught:
            transport.send(Endpoint("http", "127.0.0.1", port, "127.0.0.1"), request, time.monotonic() + 2)
        assert "tok-unregistered-1" not in caught.value.message
        assert caught.value.code == "TransportFailure"
    finally:
        listener.close()


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_every_log_line_passes_the_redaction_point(formatter: logging.Formatter) -> None:
    Credentials("AKID", "secret-KEY-value-2", TOKEN)
    logger = logging.getLogger("redaction-test")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("server said %s", TOKEN)
        try:
            # built so that the source line in the traceback does not hold the value itself
            raise http_client_header_error("-".join(("hdr", "unregistered", "2\n")))
        except ValueError:
            logger.exception("request failed")
        try:
            raise RuntimeError(f"token {TOKEN} in a traceback")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert TOKEN not in text and "hdr-unregistered-2" not in text
    assert text.count(MASK) >= 3
    if isinstance(formatter, JsonFormatter):
        for line in text.splitlines():
            json.loads(line)


# -- masked before cut: a server message cut through an echoed token ---------------------------------

LONG_TOKEN = "CAIS" + "x" * 40 + "-long-sts-token-END"  # STS tokens run to 1000+ characters


def _prefix_of(token: str, text: str) -> bool:
    """Does `text` hold any prefix of `token` long enough to be a leak (8 characters or more)?"""
    return any(token[:n] in text for n in range(8, len(token) + 1))


@pytest.mark.parametrize("pad", [450, 490, 500, 505])
def test_an_sls_error_message_cut_through_an_echoed_token_leaks_no_part_of_it(pad: int) -> None:
    from shardbeat.providers.base import HttpResponse, ProviderError
    from shardbeat.providers.sls import SlsProvider

    Credentials("AKID", "secret-KEY-value-3", LONG_TOKEN)
    message = "y" * pad + LONG_TOKEN + " tail"  # a server echoing our headers, cut at 512 characters
    body = json.dumps({"errorCode": "InternalServerError", "errorMessage": message}).encode()
    with pytest.raises(ProviderError) as caught:
        SlsProvider("127.0.0.1:1", "p", "ls", "g", "c").parse_heartbeat(
            HttpResponse(500, {"content-type": "application/json"}, body)
        )
    assert not _prefix_of(LONG_TOKEN, caught.value.message), caught.value.message[-80:]


@pytest.mark.parametrize("pad", [150, 190, 199])
def test_a_cls_error_message_cut_through_an_echoed_token_leaks_no_part_of_it(pad: int) -> None:
    from shardbeat.providers.base import HttpResponse, ProviderError
    from shardbeat.providers.cls import ClsProvider

    Credentials("AKID", "secret-KEY-value-4", LONG_TOKEN)
    error = {"Code": "InternalError", "Message": "y" * pad + LONG_TOKEN}
    body = json.dumps({"Response": {"Error": error, "RequestId": "r"}}).encode()
    with pytest.raises(ProviderError) as caught:
        ClsProvider("127.0.0.1:1", "ap-guangzhou", "logset", ["t1"], "g", "c").parse_heartbeat(
            HttpResponse(200, {"content-type": "application/json"}, body)
        )
    assert not _prefix_of(LONG_TOKEN, caught.value.message), caught.value.message[-80:]


def test_clip_masks_before_it_cuts() -> None:
    from shardbeat.core.redaction import clip

    register_secret(LONG_TOKEN)
    for limit in range(1, 80):
        shown = clip("ab " + LONG_TOKEN + " cd", limit)
        assert not _prefix_of(LONG_TOKEN, shown)
        assert len(shown) <= limit + 3
    assert clip("short", 10) == "short"


def test_an_oidc_token_file_is_a_secret_once_read(tmp_path: Path) -> None:
    from shardbeat.runtime.cloud_credentials.http import read_token_file

    path = tmp_path / "token"
    path.write_text("eyJhbGciOi.oidc-token-from-the-kubelet.sig\n")
    token = read_token_file(str(path), "STS")
    assert redact(f"Code {token}") == f"Code {MASK}"


def test_a_non_ascii_secret_is_masked_in_ascii_only_json_log_lines() -> None:
    """A proxy password may be non-ASCII; JSON log lines escape it as \\uXXXX, which must match too."""
    from shardbeat.config.proxy_url import parse_proxy_url

    parse_proxy_url("http://bob:p%C3%A4sswort-lang@127.0.0.1:3128")
    record = logging.LogRecord("t", logging.ERROR, "", 0, "proxy said %s", ("pässwort-lang",), None)
    line = JsonFormatter().format(record)
    assert "sswort-lang" not in line and MASK in line


@pytest.mark.parametrize("mode", ["json", "msgpack", None])
def test_control_socket_replies_pass_the_redaction_point(mode: str | None) -> None:
    import msgpack

    from shardbeat.runtime.control_outbox import encode_reply

    Credentials("AKID", "secret-KEY-value-5", "reply-token-VALUE-123456")
    doc = {"ok": True, "groups": [{"last_error": {"message": "server echoed reply-token-VALUE-123456"}}]}
    data = encode_reply(doc, mode)  # type: ignore[arg-type]
    assert b"reply-token-VALUE" not in data
    decoded = msgpack.unpackb(data) if mode == "msgpack" else json.loads(data)
    assert decoded["groups"][0]["last_error"]["message"] == f"server echoed {MASK}"
    assert encode_reply({"ok": True}, mode) == encode_reply({"ok": True}, mode)  # plain replies as before


def test_secrets_registered_at_start_outlive_any_number_of_rotations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Static keys and proxy credentials are registered once; a role refreshing for days registers
    hundreds of values after them. They must stay masked."""
    from shardbeat.core import redaction

    monkeypatch.setattr(redaction, "MAX_SECRETS", 20)  # the rule, at a size that tests fast
    monkeypatch.setattr(redaction, "PINNED_SECRETS", 2)
    registry = redaction.SecretRegistry()
    registry.register("static-proxy-password-1")
    registry.register("static-access-key-secret")
    for i in range(60):
        registry.register(f"rotated-sts-token-{i:06d}")
    assert registry.redact("static-proxy-password-1 static-access-key-secret") == f"{MASK} {MASK}"
    assert registry.redact("rotated-sts-token-000059") == MASK  # the newest
    assert registry.redact("rotated-sts-token-000010") == "rotated-sts-token-000010"  # long rotated out


# A token as a hostile server may echo it: every character that some encoding spells differently.
TELL = "Zq9Zq9Zq9"  # the same in any spelling of ODD_TOKEN, and in no other text of these tests
ODD_TOKEN = TELL + "'q\"\\b/+=&<i>%2F-" + "x" * 30 + "-END"


@pytest.mark.parametrize("pad", [0, 60, 100, 111])
@pytest.mark.parametrize("shape", ["text", "html", "json"])
def test_an_sls_answer_that_is_not_an_sls_error_leaks_no_token(pad: int, shape: str) -> None:
    """The excerpt of a body that is not an SLS error (a proxy's page, a portal's JSON) was cut and
    quoted with repr() before the mask: a token across the cut left its first characters, and one
    holding ' or \\ was escaped out of the mask's reach whole."""
    from shardbeat.providers.base import HttpResponse, ProviderError
    from shardbeat.providers.sls import SlsProvider

    Credentials("AKID", "secret-KEY-value-6", ODD_TOKEN)
    echo = "y" * pad + ODD_TOKEN + " tail"
    body = {
        "text": echo,
        "html": f"<html><body><pre>{echo}</pre></body></html>",
        "json": json.dumps([echo]),
    }[shape].encode()
    with pytest.raises(ProviderError) as caught:
        SlsProvider("127.0.0.1:1", "p", "ls", "g", "c").parse_heartbeat(
            HttpResponse(403, {"content-type": "text/html"}, body)
        )
    message = caught.value.message
    assert TELL not in message and not _prefix_of(ODD_TOKEN, message), message


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda t: urllib.parse.quote(t, safe=""), id="percent-encoded"),
        pytest.param(urllib.parse.quote_plus, id="form-encoded"),
        pytest.param(lambda t: json.dumps(t)[1:-1].replace("/", "\\/"), id="json-escaped-slash"),
        pytest.param(html.escape, id="html-escaped"),
        pytest.param(lambda t: repr(t)[1:-1], id="repr"),
        pytest.param(lambda t: repr(t.encode())[2:-1], id="bytes-repr"),
    ],
)
def test_a_secret_is_masked_in_every_spelling_a_server_or_library_gives_it(spelling: Any) -> None:
    """A redirect's Location percent-encodes an echoed token, PHP's json_encode writes / as \\/, a 4xx
    page HTML-escapes, an exception quotes with repr(): each spelling is masked in log lines (text and
    JSON, where it is escaped once more), in records and replies (checked on their encoded bytes)."""
    from shardbeat.core.redaction import SECRETS, masked
    from shardbeat.providers.server_values import redirect_note

    Credentials("AKID", "secret-KEY-value-7", ODD_TOKEN)
    shown = spelling(ODD_TOKEN)
    assert shown != ODD_TOKEN  # the spelling differs from the value: that is the point
    assert TELL not in redact(f"server said: {shown}!")
    assert TELL not in redirect_note(302, {"location": "http://portal.example/login?orig=" + shown})
    for formatter in (TextFormatter(), JsonFormatter()):
        record = logging.LogRecord("t", logging.ERROR, "", 0, "answer: %s", (shown,), None)
        assert TELL not in formatter.format(record)
    encoded = json.dumps({"message": f"echo {shown}"}).encode()
    assert SECRETS.found_in(encoded)  # the writer's cheap check sees it on the JSON bytes...
    assert TELL not in json.dumps(masked({"message": f"echo {shown}"}))  # ...and the mask takes it


def test_a_config_problem_is_masked_before_it_is_cut() -> None:
    from shardbeat.config.model import MAX_PROBLEM_TEXT, Problem

    Credentials("AKID", "secret-KEY-value-8", LONG_TOKEN)
    for pad in range(MAX_PROBLEM_TEXT - 40, MAX_PROBLEM_TEXT + 1, 7):
        text = str(Problem("groups[0].x", "y" * pad + LONG_TOKEN))
        assert not _prefix_of(LONG_TOKEN, text), text[-60:]


def test_the_html_spelling_of_a_secret_is_html_escape_s() -> None:
    import html

    from shardbeat.core.redaction import _html_escaped

    for value in ("a&b<c>\"d'e", "plain-Secret_123", "&&<<>>''\"\""):
        assert _html_escaped(value, quote=True) == html.escape(value)
        assert _html_escaped(value, quote=False) == html.escape(value, quote=False)


def _any_spelling(token: str, escape: Any) -> str:
    """`token` with every character that is no letter or digit spelled by `escape`."""
    return "".join(c if c.isalnum() else escape(c) for c in token)


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda t: _any_spelling(t, lambda c: f"%{ord(c):02x}"), id="percent-lower-case"),
        pytest.param(lambda t: _any_spelling(t, lambda c: f"%25{ord(c):02X}"), id="percent-twice"),
        pytest.param(
            lambda t: (
                json.dumps(t)[1:-1].replace("&", "\\u0026").replace("<", "\\u003c").replace("=", "\\u003d")
            ),
            id="json-go-gson",
        ),
        pytest.param(lambda t: _any_spelling(t, lambda c: f"\\u{ord(c):04X}"), id="json-upper-case"),
        pytest.param(lambda t: _any_spelling(t, lambda c: f"&#{ord(c)};"), id="html-decimal"),
        pytest.param(lambda t: _any_spelling(t, lambda c: f"&#x{ord(c):x};"), id="html-hex"),
        pytest.param(lambda t: html.escape(html.escape(t)), id="html-twice"),
        pytest.param(lambda t: t[:20], id="cut-to-its-start"),
        pytest.param(
            lambda t: _any_spelling(t[:20], lambda c: f"%{ord(c):02x}"), id="cut-and-percent-encoded"
        ),
        pytest.param(lambda t: "..." + t[-14:], id="cut-to-its-end"),
    ],
)
def test_a_secret_in_a_spelling_no_python_encoder_writes_or_cut_short_is_masked(spelling: Any) -> None:
    """Go's JSON writes & as \\u0026, Gson = as \\u003d, .NET upper-case \\u002B, a proxy %2f; a server
    or proxy cuts what it echoes to its first or last few dozen characters. The refused-Date line, a
    request id in a record, any log line and the records' cheap check all took these as harmless."""
    from shardbeat.core.redaction import SECRETS
    from shardbeat.providers.server_values import request_id
    from shardbeat.runtime.refused_dates import RefusedDates

    Credentials("AKID", "secret-KEY-value-9", ODD_TOKEN)
    shown = spelling(ODD_TOKEN)
    assert shown not in ODD_TOKEN or len(shown) < len(ODD_TOKEN)  # a spelling, or a fragment
    tail = ODD_TOKEN[-14:]  # a cut echo keeps one end: the start (TELL) or the end
    for text in (redact(f"server said: {shown}!"), request_id(shown) or "", redact(f"({shown})")):
        assert TELL not in text and tail not in text, text
    for text in (shown, f"Date: {shown}"):
        assert SECRETS.found_in(json.dumps({"request_id": text}).encode())
    with _captured("shardbeat.runner") as lines:
        RefusedDates().note("127.0.0.1:1", shown, 0.0)
    assert lines and all(TELL not in line and tail not in line for line in lines), lines


def test_a_key_id_that_shares_a_secrets_first_characters_is_not_masked() -> None:
    """A fragment is a secret cut short only where the text stops with it: `demo-sts-akid` beside
    `demo-sts-secret-key` keeps its name (tests, status lines and doctor show key ids)."""
    Credentials("demo-sts-secret-id", "demo-sts-secret-key-0123", "demo-sts-token-0123456789")
    assert redact("key demo-sts-secret-id, token demo-sts-tokenizer") == (
        "key demo-sts-secret-id, token demo-sts-tokenizer"
    )
    assert redact("key demo-sts-secret-ke...") == f"key {MASK}..."
    from shardbeat.core.redaction import SECRETS

    assert not SECRETS.found_in(b'{"key_id":"demo-sts-secret-id"}')  # records are not masked again for it


class _captured:
    """The messages logged to `name` while inside."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)
        self.lines: list[str] = []

    def __enter__(self) -> list[str]:
        lines = self.lines

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(record.getMessage())

        self.handler = Keep()
        self.logger.addHandler(self.handler)
        return lines

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)


def test_reading_fragments_on_is_linear_in_the_text_whatever_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A secret with a repeating pattern against a text of near-copies ("aaaa..." against "aaa...aZ")
    had every position read some 50 characters on: quadratic, seconds for a 20 KB line. The work is
    bounded per text, and what is left past the bound is masked, not shown."""
    from shardbeat.core import secret_spellings
    from shardbeat.core.secret_spellings import Spellings

    reads = [0]
    real = secret_spellings._compiled_forms

    def counted(char: str) -> Any:
        reads[0] += 1
        return real(char)

    monkeypatch.setattr(secret_spellings, "_compiled_forms", counted)
    secret = "a" * 60 + "Z" + "b" * 20
    spellings = Spellings([(secret, False)])
    text = "a" * 20000 + "Zbbbbb ok"  # ends with a cut copy: "a" * 60 + "Zbbbbb"
    masked = spellings.mask(text, MASK)
    assert reads[0] <= 2 * (len(text) + 2000), reads[0]
    assert masked.endswith(f"{MASK} ok") and "Zb" not in masked
