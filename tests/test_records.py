import json
from pathlib import Path

import jsonschema
import pytest

from shardbeat.core import records
from shardbeat.core.membership import AssignmentChanged, LeaseRenewed, Lost
from shardbeat.core.records import Identity, Instant, rfc3339

SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "record.schema.json").read_text())
WHO = Identity("sls", "g1", "c1")
AT = Instant(wall=1_700_000_000.25, mono=500.0)


def valid(rec: dict) -> dict:  # type: ignore[type-arg]
    jsonschema.Draft202012Validator(SCHEMA).validate(rec)
    return rec


def test_rfc3339_is_utc_with_millis() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_700_000_000.2506) == "2023-11-14T22:13:20.250Z"
    assert rfc3339(1_700_000_000.9996) == "2023-11-14T22:13:20.999Z"  # truncated: never later than true


def test_assignment_record() -> None:
    ev = AssignmentChanged(
        3, {"ls": frozenset({2, 0})}, {"ls": frozenset({2})}, {"ls": frozenset({1})}, lease_expires=509.0
    )
    rec = valid(records.from_event(WHO, ev, AT))
    assert rec == {
        "event": "assignment",
        "time": "2023-11-14T22:13:20.250Z",
        "provider": "sls",
        "group": "g1",
        "consumer": "c1",
        "epoch": 3,
        "assigned": {"ls": [0, 2]},
        "added": {"ls": [2]},
        "revoked": {"ls": [1]},
        "lease_expires": "2023-11-14T22:13:29.250Z",
    }


def test_lease_lost_error_stopped_records_match_the_schema() -> None:
    valid(records.from_event(WHO, LeaseRenewed(1, 510.0), AT, latency_ms=0.42))
    rec = valid(records.from_event(WHO, Lost(2, {"ls": frozenset({1})}, "lease_expired"), AT))
    assert rec["lost"] == {"ls": [1]}
    valid(records.error(WHO, AT, "InternalServerError", "boom", 500, "req-1", 0.25))
    valid(records.stopped(WHO, AT, 2))


def test_schema_rejects_an_assignment_without_lease() -> None:
    rec = records.from_event(WHO, AssignmentChanged(1, {}, {}, {}, 505.0), AT)
    del rec["lease_expires"]
    with pytest.raises(jsonschema.ValidationError):
        valid(rec)


def test_rfc3339_formats_every_second_right_whatever_came_before() -> None:
    from shardbeat.core.records import rfc3339

    seen = [rfc3339(w) for w in (1.999, 2.0, 1.5, 86399.9995, 86400.0, 2.001)]
    assert seen == [
        "1970-01-01T00:00:01.999Z",
        "1970-01-01T00:00:02.000Z",
        "1970-01-01T00:00:01.500Z",
        "1970-01-01T23:59:59.999Z",
        "1970-01-02T00:00:00.000Z",
        "1970-01-01T00:00:02.001Z",
    ]
