"""Values the server sends us, made safe before they reach a lease, a signature, a record or a log.

Everything here is pure and shared by both providers: a server (or whatever answers in its place)
may send a timeout of 10^12 s, a negative or fractional one, an id past 2^64, a Date in the year
30000, or text with control characters and lone surrogates. Each is either clamped to what we can
act on safely or refused, never passed on as it came.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from functools import lru_cache

from shardbeat.core.redaction import redact

# The longest group timeout we lease by (the config's own maximum). A longer server-side timeout
# leases by this one: a lease shorter than the server's timeout is always safe, only less useful.
MAX_GROUP_TIMEOUT = 86400
# A Date header outside [2000, 2100) is not a clock we could sign with (and 2100 keeps every
# formatter in range): it is ignored rather than applied as an offset of centuries.
EARLIEST_DATE = 946684800.0  # 2000-01-01T00:00:00Z
LATEST_DATE = 4102444800.0  # 2100-01-01T00:00:00Z
REQUEST_ID_CHARS = 128


def text(value: str, limit: int) -> str:
    """One printable line of at most `limit` characters (plus "..." when cut).

    Control characters, lone surrogates (which no UTF-8 encoder accepts) and other unprintable
    code points become spaces: server text ends up in records and log lines.
    """
    masked = redact(value)  # before the cut: a cut through an echoed token would hide it from the mask
    shown = "".join(ch if ch.isprintable() else " " for ch in masked[:limit])
    return shown + ("..." if len(masked) > limit else "")


def request_id(value: object) -> str | None:
    """A request id as it may be shown: a clipped printable string, or None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    return text(value, REQUEST_ID_CHARS)


def is_whole(value: object) -> bool:
    """A JSON integer: int but not bool (json.loads gives bool for true/false)."""
    return type(value) is int


def group_timeout(value: object) -> tuple[int, int] | None:
    """(timeout to lease by, timeout the server reported) for a group's timeout in whole seconds;
    None when it is not a positive integer. The first is clamped to MAX_GROUP_TIMEOUT."""
    if not is_whole(value):
        return None
    assert isinstance(value, int)
    if value <= 0:
        return None
    return min(value, MAX_GROUP_TIMEOUT), value


@lru_cache(maxsize=256)
def http_date(value: str | None, *, plausible: bool = True) -> float | None:
    """An HTTP Date header (RFC 5322 / RFC 7231) in epoch seconds; None when absent or unparseable,
    and, unless `plausible` is False (the emulator, which judges the time itself), when outside
    [EARLIEST_DATE, LATEST_DATE). A date without a zone (-0000) is UTC.

    The one Date parser of the package (the runner per answer, the doctor, credential issuers, the
    emulator). Cached per distinct string: a server's Date changes once a second, so nearly every
    answer repeats one already parsed (a parse costs some microseconds, a cache hit under 0.1 us).
    """
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
        seconds = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if plausible and not EARLIEST_DATE <= seconds < LATEST_DATE:
        return None
    return seconds


def redirect_note(status: int, headers: Mapping[str, str]) -> str:
    """For a 3xx answer, a note saying where it redirects (not followed); "" for any other status.

    A redirect means the endpoint (or a proxy or portal in front of it) is not the service."""
    if not 300 <= status < 400:
        return ""
    location = headers.get("location")
    where = f" to {text(location, 200)!r}" if location else ""
    return f" (a redirect{where}, not followed: check the endpoint)"
