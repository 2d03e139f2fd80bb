"""One HTTP `Date` parser (providers.server_values.http_date) for every reader of the header.

The runner, `doctor`, the credential issuers' answers and the emulator all go through it, so an absurd
Date is handled one way everywhere: ignored by the plugin (never applied as an offset of centuries),
judged as a clock too far off by the emulator (as a server does), refused as unparseable by both.
"""

from __future__ import annotations

from shardbeat.config import config_from_dict
from shardbeat.emulator.model import EmuRequest
from shardbeat.emulator.sls_auth import SlsError, authenticate
from shardbeat.providers.base import HttpResponse
from shardbeat.providers.server_values import http_date
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
    before = http_date.cache_info()
    assert http_date(value) == http_date(value) == http_date(value)
    after = http_date.cache_info()
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
    assert _refusal("Sat, 01 Jan 1980 00:00:00 GMT") == "RequestTimeExpired"
    assert _refusal("yesterday") == "InvalidDateFormat"
    assert _refusal(PLAIN) == "Unauthorized"  # the time passes; the unknown key does not
