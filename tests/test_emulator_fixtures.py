"""Emulator fixtures: the packaged default, loading from a file, and specific validation errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from shardbeat.emulator.fixtures import FixtureError, load_fixtures, parse_fixtures

DEFAULT = Path(__file__).parents[1] / "plugin" / "shardbeat" / "emulator" / "default_fixtures.json"


def default_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DEFAULT.read_text())
    return doc


def test_packaged_default_matches_the_documented_demo() -> None:
    fixtures = load_fixtures(None)
    sls_keys = {c.access_key_id: c for c in fixtures.sls_credentials}
    assert sls_keys["emulator-akid"].access_key_secret == "emulator-secret"
    assert sls_keys["emulator-akid"].security_token is None
    assert sls_keys["emulator-sts-akid"].access_key_secret == "emulator-sts-secret"
    assert sls_keys["emulator-sts-akid"].security_token == "emulator-sts-token"
    logstore = fixtures.projects["demo-project"]["demo-logstore"]
    assert logstore.shards == (0, 1, 2, 3)
    assert (logstore.groups["demo-group"].timeout, logstore.groups["demo-group"].order) == (6, False)
    cls_keys = {c.secret_id: c for c in fixtures.cls_credentials}
    assert cls_keys["emulator-secret-id"].secret_key == "emulator-secret-key"
    assert [c.token for c in fixtures.cls_credentials if c.token] == ["emulator-cls-token"]
    logset = fixtures.logsets["demo-logset"]
    assert logset.topics == {"demo-topic-a": (1, 2), "demo-topic-b": (1, 2)}
    assert logset.groups["demo-group"].topics == ("demo-topic-a", "demo-topic-b")
    assert logset.groups["demo-group"].timeout == 6
    assert fixtures.cls_rate_limit == 20


def test_demo_sections_are_ready_group_configs_without_endpoint() -> None:
    demo = load_fixtures(None).demo
    assert demo["sls"] == {
        "provider": "sls",
        "project": "demo-project",
        "logstore": "demo-logstore",
        "consumer_group": "demo-group",
        "consumer": "demo-consumer",
        "credentials": {"access_key_id": "emulator-akid", "access_key_secret": "emulator-secret"},
        "heartbeat_interval": 1.5,
        "timeout": 6,
    }
    assert demo["cls"]["provider"] == "cls"
    assert demo["cls"]["region"] == "ap-guangzhou"
    assert demo["cls"]["logset_id"] == "demo-logset"
    assert demo["cls"]["topics"] == ["demo-topic-a", "demo-topic-b"]
    assert demo["cls"]["credentials"] == {
        "secret_id": "emulator-secret-id",
        "secret_key": "emulator-secret-key",
    }
    assert "endpoint" not in demo["sls"] and "endpoint" not in demo["cls"]


def test_secrets_stay_out_of_reprs() -> None:
    text = repr(load_fixtures(None))
    for secret in ("emulator-secret", "emulator-sts-token", "emulator-secret-key", "emulator-cls-token"):
        assert f"'{secret}'" not in text


def test_load_from_file(tmp_path: Path) -> None:
    doc = default_doc()
    doc["sls"]["projects"]["demo-project"]["logstores"]["demo-logstore"]["shards"] = [3, 5, 7]
    path = tmp_path / "fixtures.json"
    path.write_text(json.dumps(doc))
    assert load_fixtures(str(path)).projects["demo-project"]["demo-logstore"].shards == (3, 5, 7)


def test_missing_file_and_bad_json_are_named(tmp_path: Path) -> None:
    with pytest.raises(FixtureError, match=r"nope\.json: cannot read fixtures file"):
        load_fixtures(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FixtureError, match=r"bad\.json: not valid JSON"):
        load_fixtures(str(bad))


def test_validation_message_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"sls": {"projects": {"p": {"logstores": {"l": {"shards": 0}}}}}}))
    with pytest.raises(FixtureError) as caught:
        load_fixtures(str(path))
    assert (
        str(caught.value) == f"{path}: sls.projects.p.logstores.l.shards: must be a positive integer, not 0"
    )


def _edit(path: list[str | int], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(default_doc())
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()
LOGSTORE = ["sls", "projects", "demo-project", "logstores", "demo-logstore"]
LOGSET = ["cls", "logsets", "demo-logset"]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["extra"], 1, "fixtures: unknown key 'extra'"),
        (["sls", "credentials"], {}, "sls.credentials: must be an array, not an object"),
        (
            ["sls", "credentials", 0, "access_key_secret"],
            "",
            "sls.credentials[0].access_key_secret: must be a non-empty",
        ),
        (
            ["sls", "credentials", 1, "access_key_id"],
            "emulator-akid",
            "sls.credentials[1].access_key_id: 'emulator-akid' is listed twice",
        ),
        ([*LOGSTORE, "shards"], [1, 1], "demo-logstore.shards: ids must be distinct"),
        (
            [*LOGSTORE, "shards"],
            [-1],
            "demo-logstore.shards: ids must be integers from 0 to 2147483647, not -1",
        ),
        ([*LOGSTORE, "shards"], [2**31], "ids must be integers from 0 to 2147483647, not 2147483648"),
        # Hostile counts: refused before range() overflows or a tuple of a billion ids is built.
        ([*LOGSTORE, "shards"], 10**20, "demo-logstore.shards: at most 10000, not 100000000000000000000"),
        ([*LOGSTORE, "shards"], 10**9, "demo-logstore.shards: at most 10000, not 1000000000"),
        ([*LOGSTORE, "shards"], list(range(10_001)), "demo-logstore.shards: at most 10000 ids, not 10001"),
        ([*LOGSET, "topics", "demo-topic-a", "partitions"], 10**20, "partitions: at most 10000"),
        ([*LOGSTORE, "shards"], _DELETE, "demo-logstore: missing key 'shards'"),
        (
            [*LOGSTORE, "consumer_groups", "demo-group", "timeout"],
            "6",
            "demo-group.timeout: must be a positive integer, not '6'",
        ),
        (
            [*LOGSTORE, "consumer_groups", "demo-group", "order"],
            0,
            "demo-group.order: must be true or false, not 0",
        ),
        (
            [*LOGSTORE, "consumer_groups"],
            {f"g{i}": {"timeout": 5} for i in range(31)},
            "at most 30 per logstore",
        ),
        (["cls", "rate_limit"], 0, "cls.rate_limit: must be a positive integer, not 0"),
        (
            [*LOGSET, "topics", "demo-topic-a", "partitions"],
            True,
            "partitions: must be a positive count or a non-empty list",
        ),
        (
            [*LOGSET, "consumer_groups", "demo-group", "topics"],
            ["nope"],
            "'nope' is not a topic of this logset",
        ),
        # Unhashable TopicIDs: a specific error, not a TypeError from the lookup.
        (
            [*LOGSET, "consumer_groups", "demo-group", "topics"],
            [["demo-topic-a"]],
            "demo-group.topics: must hold TopicID strings, not an array",
        ),
        (
            [*LOGSET, "consumer_groups", "demo-group", "topics"],
            [{"id": 1}],
            "demo-group.topics: must hold TopicID strings, not an object",
        ),
        (
            [*LOGSET, "consumer_groups", "demo-group", "topics"],
            [],
            "topics: must be a non-empty array of TopicIDs",
        ),
        (
            ["demo", "sls", "project"],
            "elsewhere",
            "demo.sls.project: 'elsewhere' is not an SLS fixture project",
        ),
        (["demo", "cls", "consumer_group"], "nope", "demo.cls.consumer_group: 'nope' is not in that logset"),
        (["demo", "cls", "topics"], ["demo-topic-a"], "demo.cls.topics: must equal the group's topics"),
        (["demo", "other"], {}, "demo: unknown key 'other'"),
    ],
)
def test_specific_validation_errors(path: list[str | int], value: Any, message: str) -> None:
    with pytest.raises(FixtureError) as caught:
        parse_fixtures(_edit(path, value))
    assert message in str(caught.value)


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(FixtureError, match="fixtures: must be an object, not an array"):
        parse_fixtures([])


def test_minimal_fixtures_are_fine() -> None:
    fixtures = parse_fixtures({})
    assert fixtures.projects == {} and fixtures.logsets == {} and fixtures.demo == {}
