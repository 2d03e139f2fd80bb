"""SLS request signing: v1 (hmac-sha1, the default) and v4 (SLS4-HMAC-SHA256, `signature_version: v4`;
the emulator verifies both). Pure functions, tested against the official SDKs' vectors.

The functions take headers as (name, value) pairs in any case, so the emulator verifies a request
from the headers it received with the very code that signed it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from collections.abc import Iterable, Mapping
from operator import itemgetter
from urllib.parse import quote

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # struct_time.tm_wday: Monday is 0
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# ---------------------------------------------------------------------------------------------------
# Signature v1 (hmac-sha1): what we send


def content_md5(body: bytes) -> str:
    """Upper-case hex MD5 of a non-empty body ("[]" included); "" for an empty one."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest().upper() if body else ""


# Formatted dates of the last few seconds: a busy process signs many requests within one second.
_DATES: dict[int, str] = {}
_KEEP_DATES = 16


def rfc1123(epoch: float) -> str:
    """HTTP date in GMT with English names, whatever the process locale (strftime would follow it)."""
    second = math.floor(epoch)  # as gmtime rounds
    text = _DATES.get(second)
    if text is None:
        t = time.gmtime(second)
        text = (
            f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
        )
        if len(_DATES) >= _KEEP_DATES:
            _DATES.clear()
        _DATES[second] = text
    return text


def _signed_v1(name: str) -> bool:
    # x-log-date is excluded: the Python SDK adds it after signing, so the server cannot sign it.
    if name.startswith("x-acs-"):
        return True
    return name.startswith("x-log-") and not name.startswith("x-log-meta-") and name != "x-log-date"


def canonical_headers_v1(headers: Iterable[tuple[str, str]]) -> str:
    """Signed x-log-*/x-acs-* headers, names lower-cased, sorted by name, each "name:value\\n"."""
    picked = sorted(((n.lower(), v) for n, v in headers if _signed_v1(n.lower())), key=itemgetter(0))
    return "".join(f"{name}:{value}\n" for name, value in picked)


def canonical_resource(path: str, query: Mapping[str, str]) -> str:
    """Path plus "?k=v&..." sorted by key, with raw (not percent-encoded) values, as the server signs."""
    if not query:
        return path
    return path + "?" + "&".join(f"{key}={query[key]}" for key in sorted(query))


def string_to_sign_v1(
    method: str,
    content_md5: str,
    content_type: str,
    date: str,
    headers: Iterable[tuple[str, str]],
    resource: str,
) -> str:
    return string_to_sign_v1_from_canonical(
        method, content_md5, content_type, date, canonical_headers_v1(headers), resource
    )


def string_to_sign_v1_from_canonical(
    method: str, content_md5: str, content_type: str, date: str, canonical_headers: str, resource: str
) -> str:
    return f"{method}\n{content_md5}\n{content_type}\n{date}\n{canonical_headers}{resource}"


def sign_v1(access_key_secret: str, string_to_sign: str) -> str:
    """base64(HMAC-SHA1(secret, string_to_sign)): the part after "LOG {key_id}:"."""
    digest = hmac.new(access_key_secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


# ---------------------------------------------------------------------------------------------------
# Signature v4 (SLS4-HMAC-SHA256): sent with `signature_version: v4`, verified by the emulator.

V4_ALGORITHM = "SLS4-HMAC-SHA256"


def v4_date(epoch: float) -> str:
    """The x-log-date value v4 signs, e.g. 20180506T094410Z."""
    t = time.gmtime(epoch)
    return f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}T{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}Z"


def content_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _signed_v4(name: str) -> bool:
    if name in ("content-type", "host") or name.startswith("x-acs-"):
        return True
    return name.startswith("x-log-") and not name.startswith("x-log-meta-")


def canonical_request_v4(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Iterable[tuple[str, str]],
    payload_sha256: str,
) -> str:
    """Method, path, RFC 3986-encoded sorted query, signed headers, blank line, their names, hash."""
    picked = sorted(((n.lower(), v.strip()) for n, v in headers if _signed_v4(n.lower())), key=itemgetter(0))
    # Like the SDK: an empty value leaves the bare key; "~" stays unescaped, "/" does not.
    encoded = (
        quote(k, safe="~") + (f"={quote(query[k], safe='~')}" if query[k] else "") for k in sorted(query)
    )
    lines = [method, path, "&".join(encoded), *(f"{n}:{v}" for n, v in picked), ""]
    lines += [";".join(n for n, _ in picked), payload_sha256]
    return "\n".join(lines)


def scope_v4(x_log_date: str, region: str) -> str:
    return f"{x_log_date[:8]}/{region}/sls/aliyun_v4_request"


def string_to_sign_v4(x_log_date: str, region: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"{V4_ALGORITHM}\n{x_log_date}\n{scope_v4(x_log_date, region)}\n{digest}"


def signing_key_v4(access_key_secret: str, day: str, region: str) -> bytes:
    """The key chain "aliyun_v4"+secret -> day (yyyymmdd) -> region -> "sls" -> "aliyun_v4_request"."""
    key = ("aliyun_v4" + access_key_secret).encode()
    for part in (day, region, "sls", "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign_v4(access_key_secret: str, x_log_date: str, region: str, string_to_sign: str) -> str:
    """Hex HMAC-SHA256 of the string to sign under signing_key_v4 of x-log-date's day."""
    key = signing_key_v4(access_key_secret, x_log_date[:8], region)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def authorization_v4(key_id: str, x_log_date: str, region: str, signature: str) -> str:
    return f"{V4_ALGORITHM} Credential={key_id}/{scope_v4(x_log_date, region)},Signature={signature}"
