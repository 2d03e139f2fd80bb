"""TC3-HMAC-SHA256, the request signature of Tencent Cloud API 3.0 (pure functions).

Written so the emulator can verify what it received with the same functions the client signs with:
they take the headers and SignedHeaders actually sent and hash the exact body bytes, never a
re-serialisation (the Python SDK sends spaced JSON, the Go SDK compact JSON).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TC3_ALGORITHM = "TC3-HMAC-SHA256"
# The SDKs sign exactly these two headers; X-TC-Token, X-TC-Timestamp etc. travel unsigned.
SIGNED_HEADERS = ("content-type", "host")
JSON_CONTENT_TYPE = "application/json"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_request_tc3(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    """The canonical request over the headers named in `signed_headers`, in that order.

    `headers` maps lower-case names to values as received. As the API doc specifies, names and
    values are lower-cased and trimmed. Signers pass the names sorted; a verifier passes the list
    from the Authorization header as received. A signed header that is absent counts as empty (the
    signature then fails unless the client signed it empty too).
    """
    names = [name.strip().lower() for name in signed_headers]
    lines = "".join(f"{name}:{headers.get(name, '').strip().lower()}\n" for name in names)
    return f"{method}\n{path}\n{query}\n{lines}\n{';'.join(names)}\n{sha256_hex(body)}"


def utc_date(timestamp: int) -> str:
    """YYYY-MM-DD of `timestamp` in UTC: the date in the credential scope."""
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def string_to_sign_tc3(timestamp: int, service: str, canonical_request: str) -> str:
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    return f"{TC3_ALGORITHM}\n{timestamp}\n{scope}\n{sha256_hex(canonical_request.encode())}"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signing_key_tc3(secret_key: str, date: str, service: str) -> bytes:
    """kSigning; depends only on (secret, date, service), so callers on a hot path cache it."""
    return _hmac(_hmac(_hmac(("TC3" + secret_key).encode(), date), service), "tc3_request")


def signature_from_key_tc3(signing_key: bytes, string_to_sign: str) -> str:
    return _hmac(signing_key, string_to_sign).hex()


def signature_tc3(secret_key: str, timestamp: int, service: str, string_to_sign: str) -> str:
    """Hex signature; the key's date is the UTC date of `timestamp`."""
    return signature_from_key_tc3(signing_key_tc3(secret_key, utc_date(timestamp), service), string_to_sign)


def format_authorization_tc3(secret_id: str, date: str, service: str, signature: str) -> str:
    """The Authorization value the SDKs send (SignedHeaders=content-type;host)."""
    return (
        f"{TC3_ALGORITHM} Credential={secret_id}/{date}/{service}/tc3_request, "
        f"SignedHeaders={';'.join(SIGNED_HEADERS)}, Signature={signature}"
    )


def authorization_tc3(
    secret_id: str, secret_key: str, timestamp: int, host: str, body: bytes, service: str = "cls"
) -> str:
    """Authorization of a POST / with Content-Type application/json, signed as the SDKs do."""
    headers = {"content-type": JSON_CONTENT_TYPE, "host": host}
    canonical = canonical_request_tc3("POST", "/", "", headers, SIGNED_HEADERS, body)
    to_sign = string_to_sign_tc3(timestamp, service, canonical)
    signature = signature_tc3(secret_key, timestamp, service, to_sign)
    return format_authorization_tc3(secret_id, utc_date(timestamp), service, signature)


@dataclass(frozen=True, slots=True)
class Tc3Authorization:
    """A parsed Authorization header; `algorithm` is as sent (the verifier checks it)."""

    algorithm: str
    secret_id: str
    date: str  # YYYY-MM-DD, to compare with the UTC date of X-TC-Timestamp
    service: str
    signed_headers: tuple[str, ...]  # lower-case, in the order sent
    signature: str  # lower-case hex


_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
_AUTH_FIELDS = {"Credential", "SignedHeaders", "Signature"}


def parse_authorization_tc3(value: str) -> Tc3Authorization | None:
    """`ALG Credential=id/date/service/tc3_request, SignedHeaders=a;b, Signature=hex`, else None."""
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, eq, item = part.strip().partition("=")
        if not eq or key in fields:
            return None
        fields[key] = item.strip()
    if not algorithm or fields.keys() != _AUTH_FIELDS:
        return None
    scope = fields["Credential"].split("/")
    if len(scope) != 4 or scope[3] != "tc3_request" or not all(scope):
        return None
    secret_id, date, service, _ = scope
    signed = tuple(name.strip().lower() for name in fields["SignedHeaders"].split(";"))
    signature = fields["Signature"]
    if not _DATE_RE.fullmatch(date) or not all(signed) or not _SIGNATURE_RE.fullmatch(signature):
        return None
    return Tc3Authorization(algorithm, secret_id, date, service, signed, signature.lower())
