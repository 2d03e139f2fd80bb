"""SLS request authentication, verified from the headers actually received.

Signature v1 (hmac-sha1, what every SDK sends by default) and v4 (SLS4-HMAC-SHA256), computed with
the very functions the client signs with (shardbeat.providers.sls), so a disagreement between the
two is a bug in exactly one place. Error codes, statuses and messages follow the SLS "common error
codes" page; where it is silent, the comment says so.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from shardbeat.emulator.fixtures import SlsCredential
from shardbeat.emulator.model import EmuRequest
from shardbeat.emulator.tokens import token_matches
from shardbeat.providers import sls as wire
from shardbeat.providers.server_values import http_date

MAX_CLOCK_SKEW = 15 * 60.0  # seconds between the request's Date and the server clock
API_VERSION = "0.6.0"
_V1_AUTH = re.compile(r"LOG ([^:\s]+):(\S+)")
_V4_AUTH = re.compile(
    r"SLS4-HMAC-SHA256 Credential=([^/\s]+)/(\d{8})/([A-Za-z0-9-]+)/sls/aliyun_v4_request,"
    r"\s*Signature=([0-9a-f]{64})"
)
_V4_DATE = re.compile(r"\d{8}T\d{6}Z")


class SlsError(Exception):
    """An SLS error answer: HTTP status, errorCode, errorMessage."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def authenticate(
    req: EmuRequest, credentials: Mapping[str, SlsCredential], server_now: float
) -> SlsCredential:
    """The credential that signed `req`; raises SlsError for anything a real server would refuse."""
    headers = req.headers
    authorization = headers.get("authorization", "")
    version = headers.get("x-log-apiversion")
    if version is None:
        raise SlsError(400, "MissingAPIVersion", "x-log-apiversion does not exist in http header.")
    if version != API_VERSION:
        raise SlsError(400, "InvalidAPIVersion", f"x-log-apiversion {version} is unsupported.")
    if req.body and "content-type" not in headers:
        raise SlsError(
            400, "MissingContentType", "Content-Type does not exist in http header when body is not empty."
        )
    if authorization.startswith("SLS4-HMAC-SHA256 "):
        return _verify_v4(req, authorization, credentials, server_now)
    return _verify_v1(req, authorization, credentials, server_now)


def _check_time(sent: float, server_now: float, shown: str) -> None:
    if abs(sent - server_now) > MAX_CLOCK_SKEW:
        server = wire.rfc1123(server_now)
        # The common-error page calls this RequestTimeTooSkewed; servers answer RequestTimeExpired
        # (what the reference and the SDKs' users report), so that is what we send.
        raise SlsError(
            400,
            "RequestTimeExpired",
            f"Request time {shown} has been expired while server time is {server}.",
        )


def _credential(
    key_id: str, credentials: Mapping[str, SlsCredential], headers: Mapping[str, str]
) -> SlsCredential:
    credential = credentials.get(key_id)
    if credential is None:
        raise SlsError(401, "Unauthorized", f"AccessKeyId not found: {key_id}")
    if not token_matches(headers.get("x-acs-security-token"), credential.security_token):
        raise SlsError(401, "Unauthorized", "The security token you provided is invalid.")
    return credential


def _verify_v1(
    req: EmuRequest, authorization: str, credentials: Mapping[str, SlsCredential], server_now: float
) -> SlsCredential:
    headers = req.headers
    match = _V1_AUTH.fullmatch(authorization.strip())
    if match is None:
        raise SlsError(400, "MissAccessKeyId", "x-log-accesskeyid does not exist in header.")
    key_id, signature = match.groups()
    method = headers.get("x-log-signaturemethod")
    if method is None:
        raise SlsError(400, "MissingSignatureMethod", "x-log-signaturemethod does not exist in http header.")
    if method != "hmac-sha1":
        raise SlsError(400, "InvalidSignatureMethod", f"signature method {method} is unsupported.")
    date = headers.get("date")
    if date is None:
        raise SlsError(400, "MissingDate", "Date does not exist in http header.")
    sent = http_date(date, plausible=False)  # an absurd one is refused below, as too far off
    if sent is None:
        raise SlsError(400, "InvalidDateFormat", f"Date {date} must follow RFC822.")
    _check_time(sent, server_now, date)
    md5 = headers.get("content-md5", "")
    _check_md5(req.body, md5)
    credential = _credential(key_id, credentials, headers)
    to_sign = wire.string_to_sign_v1(
        req.method,
        md5,
        headers.get("content-type", ""),
        date,
        headers.items(),
        wire.canonical_resource(req.path, req.query),
    )
    expected = wire.sign_v1(credential.access_key_secret, to_sign)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SlsError(401, "SignatureNotMatch", f"Signature {signature} is not matched.")
    return credential


def _check_md5(body: bytes, sent: str) -> None:
    # Every SDK sends Content-MD5 with a non-empty body, and the signature covers it; the error code
    # for a missing or wrong one is not documented, so the emulator names it InvalidContentMD5.
    if not body:
        if sent:
            raise SlsError(400, "InvalidContentMD5", "Content-MD5 is given but the body is empty.")
        return
    if not sent:
        raise SlsError(
            400, "InvalidContentMD5", "Content-MD5 does not exist in http header when body is not empty."
        )
    if sent != wire.content_md5(body):
        raise SlsError(400, "InvalidContentMD5", f"Content-MD5 {sent} does not match the body.")


def _verify_v4(
    req: EmuRequest, authorization: str, credentials: Mapping[str, SlsCredential], server_now: float
) -> SlsCredential:
    headers = req.headers
    match = _V4_AUTH.fullmatch(authorization.strip())
    if match is None:
        raise SlsError(400, "MissAccessKeyId", "x-log-accesskeyid does not exist in header.")
    key_id, scope_date, region, signature = match.groups()
    x_log_date = headers.get("x-log-date", "")
    if not _V4_DATE.fullmatch(x_log_date):
        raise SlsError(400, "InvalidDateFormat", f"x-log-date {x_log_date} must look like 20180506T094410Z.")
    try:
        sent = datetime.strptime(x_log_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise SlsError(400, "InvalidDateFormat", f"x-log-date {x_log_date} is not a valid time.") from None
    _check_time(sent, server_now, x_log_date)
    if scope_date != x_log_date[:8]:
        raise SlsError(401, "SignatureNotMatch", f"credential date {scope_date} does not match x-log-date.")
    payload = headers.get("x-log-content-sha256", "")
    if payload != hashlib.sha256(req.body).hexdigest():
        # Undocumented code; the header is signed, so a mismatch means a changed body.
        raise SlsError(400, "InvalidContentSha256", "x-log-content-sha256 does not match the body.")
    credential = _credential(key_id, credentials, headers)
    canonical = wire.canonical_request_v4(req.method, req.path, req.query, headers.items(), payload)
    to_sign = wire.string_to_sign_v4(x_log_date, region, canonical)
    expected = wire.sign_v4(credential.access_key_secret, x_log_date, region, to_sign)
    if not hmac.compare_digest(expected, signature):
        raise SlsError(401, "SignatureNotMatch", f"Signature {signature} is not matched.")
    return credential
