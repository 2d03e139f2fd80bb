"""Keys a credential source issues pass the check configured keys pass (config.credentials.credential_flaw).

Before, a metadata service answering a SecurityToken with a lone surrogate made every bootstrap and
heartbeat an "internal error" traceback in signing (UnicodeEncodeError), retried forever.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shardbeat.config.credential_sources import EcsRamRole
from shardbeat.runtime.cloud_credentials import fetch
from shardbeat.runtime.cloud_credentials.http import DefaultSessions, FetchError


@pytest.mark.parametrize(
    ("field", "value", "flaw"),
    [
        ("SecurityToken", "SEKRIT\ud800", "non-ASCII"),  # a lone surrogate: signing could not encode it
        ("AccessKeySecret", "SEKRIT\x07", "control character"),
        ("AccessKeyId", "SEKRIT\n", "newline"),
        ("SecurityToken", " SEKRIT", "whitespace"),
    ],
)
def test_issued_keys_pass_the_configured_keys_check(field: str, value: str, flaw: str) -> None:
    """A metadata service (or a profile's chain) that issues an unusable key is a named fetch failure,
    never an internal error in signing on every call afterwards; the value is never quoted."""
    doc = {
        "Code": "Success",
        "AccessKeyId": "akid",
        "AccessKeySecret": "secret",
        "SecurityToken": "tok",
        "Expiration": "2100-01-01T00:00:00Z",
    }
    doc[field] = value

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            self._answer(b"imds-token")

        def do_GET(self) -> None:
            self._answer(json.dumps(doc).encode())  # \ud800 travels as the JSON escape

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sessions = DefaultSessions()
    try:
        with pytest.raises(FetchError) as caught:
            fetch(EcsRamRole(f"http://127.0.0.1:{server.server_address[1]}", "r1"), sessions)
    finally:
        sessions.close()
        server.shutdown()
        server.server_close()
    assert flaw in str(caught.value)
    assert value.strip() not in str(caught.value)
