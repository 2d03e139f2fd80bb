"""One HTTP `Date` parser (providers.server_values.http_date) for every reader of the header.

The runner, `doctor`, the credential issuers' answers and the emulator all go through it, so an absurd
Date is handled one way everywhere: ignored by the plugin (never applied as an offset of centuries),
judged as a clock too far off by the emulator (as a server does), refused as unparseable by both.
"""

from __future__ import annotations

import logging
import random

import pytest

from shardbeat.config import config_from_dict
from shardbeat.emulator.model import EmuRequest
from shardbeat.emulator.sls_auth import SlsError, authenticate
from shardbeat.providers import server_values
from shardbeat.providers.base import HttpResponse
from shardbeat.providers.server_values import EARLIEST_DATE, LATEST_DATE, http_date
from shardbeat.runtime.clock import Clock
from shardbeat.runtime.doctor.checks import _GroupDoctor
from shardbeat.runtime.network import Network

ABSURD = "Thu, 01 Jan 2150 00:00:00 GMT"
PLAIN = "Sun, 06 May 2018 09:44:10 GMT"


def test_plausible_rules_and_zones() -> None:
    assert http_date(PLAIN) == 1525599850.0
    assert http_date("Sun, 06 May 2018 09:44:10 -0000") == 1525599850.0  # no zone: UTC
    assert http_date("Sun, 06 May 2018 11:44:10 +0200") == 1525599850.0
    assert http_date(ABSURD) is None and http_date(ABSURD, plausible=False) == 5680281600.0
    for bad in (None, "", "yesterday", "Sun, 99 May 2018 09:44:10 GMT", "Fri, 01 Jan 10000 00:00:00 GMT"):
        assert http_date(bad) is None and http_date(bad, plausible=False) is None


def test_repeated_dates_are_parsed_once() -> None:
    value = "Mon, 07 May 2018 09:44:10 GMT"
    before = server_values._http_date.cache_info()
    assert http_date(value) == http_date(value) == http_date(value)
    after = server_values._http_date.cache_info()
    assert after.hits - before.hits >= 2


def _doctor() -> _GroupDoctor:
    raw = {
        "provider": "sls",
        "endpoint": "http://127.0.0.1:9",
        "project": "my-project",
        "logstore": "my-logstore",
        "consumer_group": "my-group",
        "credentials": {"access_key_id": "id", "access_key_secret": "secret"},
    }
    config = config_from_dict({"groups": [raw]}, hostname="h").config
    return _GroupDoctor(config.groups[0], None, None, Clock(), 1.0, Network.of(config))  # type: ignore[arg-type]


def test_doctor_ignores_an_absurd_date() -> None:
    doctor = _doctor()
    doctor.observe_clock(HttpResponse(200, {"date": ABSURD}, b""), 1525599850.0)
    assert not doctor.clock_seen  # "offset unknown", not a clock 130 years behind
    doctor.observe_clock(HttpResponse(200, {"date": PLAIN}, b""), 1525599850.0)
    assert doctor.clock_seen


def test_doctor_names_a_refused_date_in_its_clock_check() -> None:
    from shardbeat.runtime.doctor.verdicts import clock_verdict

    doctor = _doctor()
    doctor.observe_clock(HttpResponse(200, {"date": "Sat, 01 Jan 0000 00:00:00 GMT"}, b""), 1525599850.0)
    assert not doctor.clock_seen  # it read 2000-01-01: "18 years behind", FAIL, and told to fix NTP
    status, detail = clock_verdict("sls", None, doctor.date_refused)
    assert status == "WARN" and "'Sat, 01 Jan 0000 00:00:00 GMT' is malformed or implausible" in detail
    assert clock_verdict("sls", None) == ("WARN", "offset unknown: no answer carried a Date header")


def _sls_request(date: str) -> EmuRequest:
    headers = {
        "authorization": "LOG id:c2lnbmF0dXJl",
        "x-log-apiversion": "0.6.0",
        "x-log-signaturemethod": "hmac-sha1",
        "date": date,
    }
    return EmuRequest("GET", "/logstores", {}, "", headers, b"")


def _refusal(date: str) -> str:
    try:
        authenticate(_sls_request(date), {}, 1525599850.0)
    except SlsError as exc:
        return exc.code
    raise AssertionError("accepted")


def test_emulator_judges_an_absurd_date_as_a_clock_too_far_off() -> None:
    assert _refusal(ABSURD) == "RequestTimeExpired"
    assert _refusal("Tue, 01 Jan 1980 00:00:00 GMT") == "RequestTimeExpired"
    assert _refusal("yesterday") == "InvalidDateFormat"
    assert _refusal(PLAIN) == "Unauthorized"  # the time passes; the unknown key does not


# -- the grammar: RFC 9110's three forms, every field checked --------------------------------------------

WHEN = 784111777.0  # 1994-11-06T08:49:37Z, RFC 9110's example


def test_the_three_forms_of_rfc_9110_read_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_values, "_this_year", lambda: 2026)
    server_values._http_date.cache_clear()
    for value in (
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850: 94 is more than 50 years ahead of 2026: 1994
        "Sun Nov  6 08:49:37 1994",  # asctime
        "Sun Nov 06 08:49:37 1994",
        "sun, 06 nov 1994 08:49:37 gmt",  # any case
        "  Sun,  06 Nov 1994   08:49:37 GMT ",  # runs of spaces
        "06 Nov 1994 08:49:37 GMT",  # RFC 5322: the weekday is optional...
        "Sun, 06 Nov 1994 03:49:37 EST",  # ...and so are its obsolete zones
        "Sun, 06 Nov 1994 10:19:37 +0130",
    ):
        assert http_date(value, plausible=False) == WHEN, value
    assert http_date("Sun, 06 Nov 1994 08:49 GMT", plausible=False) == WHEN - 37  # seconds optional


@pytest.mark.parametrize(
    "value",
    [
        "Sat, 01 Jan 0000 00:00:00 GMT",  # email.utils: 2000
        "Fri, 01 Jan 0099 00:00:00 GMT",  # email.utils: 1999
        "Sat, 01 Jan 00 00:00:00 GMT",  # RFC 822's 2-digit year: not an HTTP-date form
        "Sat, 01 Jan 100 00:00:00 GMT",  # 3 digits
        "Sat, 01 Jan 02000 00:00:00 GMT",  # 5 digits
        "Mon, 06 Nov 1994 08:49:37 GMT",  # not a Monday
        "Sun, 06 Nov 1994 08:49:37 XYZ",  # no such zone
        "Sun, 06 Nov 1994 08:49:37 +2400",
        "Sun, 06 Nov 1994 08:49:37 +0160",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Now 1994 08:49:37 GMT",
        "Tue, 29 Feb 2022 08:49:37 GMT",  # not a leap year
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 08:49:60 GMT",  # a leap second is only ever 23:59:60 UTC
        "Sun, 06 Nov 1994 08:49:37",  # IMF without a zone
        "Sunday, 06-Nov-94 08:49:37 EST",  # RFC 850 is GMT
        "Sun Nov  6 08:49:37 94",  # asctime has 4 digits
        "Sun, 06 Nov 1994 08:49:37 GMT trailing",
        "Sun, 06 Nov 1994 08:49:37 GMT" + " " * 60,  # longer than any date: not parsed, not cached
        "Sun, 06 Nov 1994 08:49:37 GMT\x00",
        "Sun, ٠٦ Nov 1994 08:49:37 GMT",  # digits other than ASCII
    ],
)
def test_a_malformed_date_is_refused_not_read_as_another(value: str) -> None:
    assert http_date(value, plausible=False) is None
    assert http_date(value) is None


def test_a_leap_second_and_leap_days_read_right() -> None:
    assert http_date("Wed, 31 Dec 2008 23:59:60 GMT") == 1230768000.0  # as 2009-01-01T00:00:00Z
    assert http_date("Thu, 01 Jan 2009 00:59:60 +0100") == 1230768000.0
    assert http_date("Tue, 29 Feb 2000 00:00:00 GMT") == 951782400.0
    assert http_date("Thu, 29 Feb 2024 12:00:00 GMT") == 1709208000.0
    assert http_date("Mon, 01 Jan 1900 00:00:00 GMT", plausible=False) == -2208988800.0


def test_rfc_850_years_follow_the_50_year_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_values, "_this_year", lambda: 2026)
    server_values._http_date.cache_clear()
    assert http_date("Thursday, 01-Jan-26 00:00:00 GMT") == 1767225600.0
    assert http_date("Wednesday, 01-Jan-76 00:00:00 GMT", plausible=False) == 3345062400.0  # 2076: 50 ahead
    assert http_date("Saturday, 01-Jan-77 00:00:00 GMT", plausible=False) == 220924800.0  # 1977, not 2077
    assert http_date("Saturday, 01-Jan-77 00:00:00 GMT") is None  # outside 2000-2099: ignored
    assert http_date("Saturday, 01-Jan-00 00:00:00 GMT") == 946684800.0
    assert http_date("Sunday, 06-Nov-1994 08:49:37 GMT", plausible=False) == WHEN  # 4 digits as written


def test_the_parser_agrees_with_the_standard_library_over_the_centuries() -> None:
    """Cross-check: formatdate writes IMF-fixdate; over a spread of instants (leap days, month ends,
    1900 and 2100, which are not leap years, 2000, which is) the parse gives back the instant."""
    from email.utils import formatdate

    rng = random.Random(7)
    edges = [EARLIEST_DATE, LATEST_DATE - 1, LATEST_DATE, 951782400.0, 4107542399.0, -2203891200.0]
    spread = [float(rng.randrange(-2208988800, 32503680000)) for _ in range(3000)]  # 1900-2999
    for when in edges + spread:
        value = formatdate(when, usegmt=True)
        assert http_date(value, plausible=False) == when, value
        assert http_date(value) == (when if EARLIEST_DATE <= when < LATEST_DATE else None), value


def test_a_server_date_with_year_0000_does_not_move_the_signing_clock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The driver's clock offset ignores it (it was read as 2000-01-01: an offset of decades, applied
    to every signature), and the log says so once per endpoint, not once per answer."""
    from shardbeat.core.skew import ServerClock
    from shardbeat.runtime.refused_dates import RefusedDates

    clock, notes = ServerClock(), RefusedDates(every=600)
    wall = 1767225600.0
    with caplog.at_level(logging.WARNING):
        for i in range(50):
            value = "Sat, 01 Jan 0000 00:00:00 GMT"
            date = http_date(value)
            if date is None:
                notes.note("sls.example:443", value, mono=100.0 + i)
            else:
                clock.observe(date, wall, wall + 0.1)
        assert clock.offset == 0.0
        lines = [r.getMessage() for r in caplog.records if "Date header" in r.getMessage()]
        assert (
            len(lines) == 1
            and "'Sat, 01 Jan 0000 00:00:00 GMT'" in lines[0]
            and "sls.example:443" in lines[0]
        )
        notes.note("sls.example:443", "junk\x1b[2J", mono=100.0 + 600)
        lines = [r.getMessage() for r in caplog.records if "Date header" in r.getMessage()]
        assert len(lines) == 2 and "49 more since the last note" in lines[1] and "\x1b" not in lines[1]
        notes.note("other:443", "junk", mono=701.0)  # another endpoint has its own note
        assert sum("other:443" in r.getMessage() for r in caplog.records) == 1
