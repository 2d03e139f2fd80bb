"""One redaction point: no secret and no header value quoted by an exception reaches a log or record."""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import time

import pytest

from shardbeat.core.redaction import MASK, describe_exception, redact, register_secret
from shardbeat.providers.base import Credentials, Endpoint, HttpRequest
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


def test_the_transport_boundary_never_passes_a_header_value_on() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        transport = HttpTransport()
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
