"""CLS (Tencent Cloud API 3.0) request authentication: TC3-HMAC-SHA256 from the headers received.

Uses the client's own TC3 functions (shardbeat.providers.tc3 via providers.cls) over the headers
named in the request's SignedHeaders (Host as sent, port included) and the exact body bytes.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from shardbeat.emulator.fixtures import ClsCredential
from shardbeat.emulator.model import EmuRequest
from shardbeat.emulator.tokens import token_matches
from shardbeat.providers import cls as wire
from shardbeat.providers.tc3 import utc_date

MAX_CLOCK_SKEW = 5 * 60  # seconds between X-TC-Timestamp and the server clock
SERVICE = "cls"
_REQUIRED_SIGNED = ("content-type", "host")
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


class ClsError(Exception):
    """A CLS error answer: Response.Error.Code and Message (HTTP 200 all the same)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def authenticate(
    req: EmuRequest, credentials: Mapping[str, ClsCredential], server_now: float
) -> ClsCredential:
    """The credential that signed `req`; raises ClsError as the real API would."""
    headers = req.headers
    stamp = headers.get("x-tc-timestamp")
    if stamp is None:
        raise ClsError("MissingParameter", "The request is missing a required parameter `X-TC-Timestamp`.")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise ClsError("InvalidParameter", f"X-TC-Timestamp {stamp!r} is not an integer.") from None
    if abs(timestamp - server_now) > MAX_CLOCK_SKEW:
        raise ClsError(
            "AuthFailure.SignatureExpire",
            f"Signature expired. Timestamp {timestamp} and server time {int(server_now)} differ by more than "
            "five minutes; check that the local clock is synchronised.",
        )
    authorization = wire.parse_authorization_tc3(headers.get("authorization", ""))
    if authorization is None:
        raise ClsError(
            "AuthFailure.InvalidAuthorization", "The Authorization header is missing or malformed."
        )
    if authorization.algorithm != wire.TC3_ALGORITHM:
        raise ClsError(
            "AuthFailure.InvalidAuthorization",
            f"Unsupported signature algorithm {authorization.algorithm!r}.",
        )
    if authorization.service != SERVICE:
        raise ClsError(
            "AuthFailure.InvalidAuthorization",
            f"Credential scope names service {authorization.service!r}, not cls.",
        )
    day = utc_date(timestamp)
    if authorization.date != day:
        raise ClsError(
            "AuthFailure.InvalidAuthorization",
            f"Credential date {authorization.date} is not the UTC date of X-TC-Timestamp ({day}).",
        )
    missing = [name for name in _REQUIRED_SIGNED if name not in authorization.signed_headers]
    if missing:
        raise ClsError(
            "AuthFailure.InvalidAuthorization", f"SignedHeaders must include {', '.join(missing)}."
        )
    credential = credentials.get(authorization.secret_id)
    if credential is None:
        raise ClsError("AuthFailure.SecretIdNotFound", "The SecretId is not found, please check it.")
    if not token_matches(headers.get("x-tc-token"), credential.token):
        raise ClsError(
            "AuthFailure.TokenFailure", "The token is invalid or does not belong to this SecretId."
        )
    # The SDKs can send X-TC-Content-SHA256: UNSIGNED-PAYLOAD; the hash then covers that word.
    unsigned = headers.get("x-tc-content-sha256") == _UNSIGNED_PAYLOAD
    body = _UNSIGNED_PAYLOAD.encode() if unsigned else req.body
    canonical = wire.canonical_request_tc3(
        req.method, req.path, req.raw_query, headers, authorization.signed_headers, body
    )
    to_sign = wire.string_to_sign_tc3(timestamp, SERVICE, canonical)
    expected = wire.signature_tc3(credential.secret_key, timestamp, SERVICE, to_sign)
    if not hmac.compare_digest(expected, authorization.signature):
        raise ClsError(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        )
    return credential
