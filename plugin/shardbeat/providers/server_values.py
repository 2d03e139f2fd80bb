"""Values the server sends us, made safe before they reach a lease, a signature, a record or a log.

Everything here is pure and shared by both providers: a server (or whatever answers in its place)
may send a timeout of 10^12 s, a negative or fractional one, an id past 2^64, a Date in the year
30000, or text with control characters and lone surrogates. Each is either clamped to what we can
act on safely or refused, never passed on as it came.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
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


# RFC 9110 5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms a recipient must still read.
# Robust where RFC 9110 invites it (RFC 5322's optional weekday and seconds, numeric and US zones,
# any case, runs of spaces), strict wherever a value could be misread: a year is 4 digits (2 only in
# the RFC 850 form, read by RFC 9110's 50-year rule), every field in its range (23:59:60 UTC, a leap
# second, included), the weekday (when given) that of the date. email.utils read "0000" as 2000 and
# "0099" as 1999, and other obsolete years the same way; a wrong year is worse than none.
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]  # 0: Monday
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_ZONES = dict.fromkeys(("gmt", "ut", "utc", "z"), 0) | {"est": -5, "edt": -4, "cst": -6, "cdt": -5}
_ZONES |= {"mst": -7, "mdt": -6, "pst": -8, "pdt": -7}  # RFC 5322's obsolete zones, in hours
_TIME = r"(?P<H>\d\d?):(?P<M>\d\d)(?::(?P<S>\d\d))?"
_DATE_FORMS = (
    # IMF-fixdate (and RFC 5322): Sun, 06 Nov 1994 08:49:37 GMT
    re.compile(
        rf"(?:(?P<wd>[a-z]+),\s*)?(?P<d>\d\d?)\s+(?P<mon>[a-z]{{3}})\s+(?P<y>\d{{4}})\s+{_TIME}"
        r"\s+(?P<zone>[a-z]+|[+-]\d{4})",
        re.IGNORECASE | re.ASCII,
    ),
    # RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
    re.compile(
        rf"(?P<wd>[a-z]+),\s*(?P<d>\d\d)-(?P<mon>[a-z]{{3}})-(?P<y>\d\d|\d{{4}})\s+{_TIME}\s+(?P<zone>gmt)",
        re.IGNORECASE | re.ASCII,
    ),
    # asctime: Sun Nov  6 08:49:37 1994 (no zone: GMT)
    re.compile(
        rf"(?P<wd>[a-z]+)\s+(?P<mon>[a-z]{{3}})\s+(?P<d>\d\d?)\s+{_TIME}\s+(?P<y>\d{{4}})",
        re.IGNORECASE | re.ASCII,
    ),
)
MAX_DATE_CHARS = 64  # a longer Date is no date; it is not parsed (nor kept in the cache)


def http_date(value: str | None, *, plausible: bool = True) -> float | None:
    """An HTTP Date header (RFC 9110: IMF-fixdate, RFC 850 or asctime) in epoch seconds; None when
    absent or malformed, and, unless `plausible` is False (the emulator, which judges the time itself),
    when outside [EARLIEST_DATE, LATEST_DATE). A numeric zone applies; -0000 is UTC.

    The one Date parser of the package (the runner per answer, the doctor, credential issuers, the
    emulator). Cached per distinct string: a server's Date changes once a second, so nearly every
    answer repeats one already parsed (a parse costs some microseconds, a cache hit under 0.1 us).
    """
    if not value or len(value) > MAX_DATE_CHARS:
        return None
    return _http_date(value, plausible)


def _this_year() -> int:
    return time.gmtime().tm_year


@lru_cache(maxsize=256)
def _http_date(value: str, plausible: bool) -> float | None:
    stripped = value.strip()
    for form in _DATE_FORMS:
        found = form.fullmatch(stripped)
        if found is not None:
            break
    else:
        return None
    fields = found.groupdict()
    month = _MONTHS.get(fields["mon"].lower())
    year, day = int(fields["y"]), int(fields["d"])
    if len(fields["y"]) == 2:  # RFC 9110: a year more than 50 years ahead is the last century's
        # (the one reading of the wall clock here; a cached answer outliving a New Year can only be off
        # for a date 50 years away, which no server sends)
        year += 2000 if 2000 + year <= _this_year() + 50 else 1900
    hour, minute, second = int(fields["H"]), int(fields["M"]), int(fields["S"] or 0)
    zone = fields.get("zone") or "GMT"
    if zone[0] in "+-":
        zone_hours, zone_minutes = int(zone[1:3]), int(zone[3:])
        if zone_hours > 23 or zone_minutes > 59:
            return None
        offset = (zone_hours * 3600 + zone_minutes * 60) * (-1 if zone[0] == "-" else 1)
    elif zone.lower() in _ZONES:
        offset = _ZONES[zone.lower()] * 3600
    else:
        return None
    if month is None or year < 1 or not 1 <= day <= _month_days(year, month):
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    days = _days_from_civil(year, month, day)
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
    if second == 60 and seconds % 86400 != 0:  # a leap second is 23:59:60 UTC (read as 00:00:00 next)
        return None
    weekday = fields.get("wd")
    if weekday is not None:  # "Sun" or "Sunday", and the date's own (1970-01-01 was a Thursday)
        expected = _WEEKDAYS[(days + 3) % 7]
        if weekday.lower() not in (expected, expected[:3]):
            return None
    result = float(seconds)
    if plausible and not EARLIEST_DATE <= result < LATEST_DATE:
        return None
    return result


def _month_days(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm: no datetime limits)."""
    year -= month <= 2
    era = year // 400
    of_era = year - era * 400
    of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    of_era_days = of_era * 365 + of_era // 4 - of_era // 100 + of_year
    return era * 146097 + of_era_days - 719468


def redirect_note(status: int, headers: Mapping[str, str]) -> str:
    """For a 3xx answer, a note saying where it redirects (not followed); "" for any other status.

    A redirect means the endpoint (or a proxy or portal in front of it) is not the service."""
    if not 300 <= status < 400:
        return ""
    location = headers.get("location")
    where = f" to {text(location, 200)!r}" if location else ""
    return f" (a redirect{where}, not followed: check the endpoint)"
