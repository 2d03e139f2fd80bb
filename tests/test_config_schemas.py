"""The schema loader, the control schema, and schema messages that never echo values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from shardbeat import schemas
from shardbeat.config.schema_errors import schema_problems
from shardbeat.schemas import SCHEMA_NAMES, SchemaNotFound, load_schema, schema_text

REPO_SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_schema_loads_and_is_valid_2020_12(name: Any) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema == json.loads((REPO_SCHEMAS / f"{name}.schema.json").read_text())


def test_load_schema_returns_a_fresh_copy() -> None:
    first = load_schema("config")
    first["title"] = "changed"
    assert load_schema("config")["title"] != "changed"


def test_unknown_schema_name() -> None:
    with pytest.raises(SchemaNotFound):
        schema_text("nope")


def test_packaged_copy_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "control.schema.json").write_text('{"packaged": true}')
    monkeypatch.setattr(schemas, "_PACKAGED", tmp_path / "schemas")
    schemas.schema_text.cache_clear()
    try:
        assert load_schema("control") == {"packaged": True}
        # Not packaged: falls back to the repository's schemas/.
        assert load_schema("config") == json.loads((REPO_SCHEMAS / "config.schema.json").read_text())
    finally:
        schemas.schema_text.cache_clear()


def test_a_package_that_is_not_plain_files_is_read_through_importlib_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zipped package has no schemas/ directory on disk: importlib.resources reads them (it is
    imported only then: it costs ~3 ms at start)."""
    import importlib.resources

    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "reply.schema.json").write_text('{"zipped": true}')
    monkeypatch.setattr(schemas, "_PACKAGED", tmp_path / "nowhere")
    monkeypatch.setattr(schemas, "_REPO_SCHEMAS", tmp_path / "nowhere")
    monkeypatch.setattr(importlib.resources, "files", lambda package: tmp_path)
    schemas.schema_text.cache_clear()
    try:
        assert load_schema("reply") == {"zipped": True}
        with pytest.raises(SchemaNotFound):
            schema_text("record")
    finally:
        schemas.schema_text.cache_clear()


# -- control messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        {"op": "released", "group": "g1", "shards": {"my-logstore": [0, 1]}},
        {
            "op": "held",
            "group": "g1",
            "provider": "cls",
            "consumer": "c1",
            "shards": {"topic-a": [1], "b": []},
        },
        {"op": "heartbeat"},
        {"op": "heartbeat", "group": "g1"},
        {"op": "status"},
        {"op": "reload"},
        {"op": "stop"},
    ],
)
def test_valid_control_messages(message: dict[str, Any]) -> None:
    assert schema_problems("control", message) == []


@pytest.mark.parametrize(
    ("message", "path", "words"),
    [
        ({}, "op", "required"),
        ({"op": "pause"}, "op", "one of"),
        ({"op": "released", "shards": {"a": [0]}}, "group", "required for op released"),
        ({"op": "held", "group": "g"}, "shards", "required for op held"),
        ({"op": "released", "group": "g", "shards": {"a": [0, 0]}}, "shards.a", "must not repeat"),
        ({"op": "released", "group": "g", "shards": {"a": [-1]}}, "shards.a[0]", "at least 0"),
        ({"op": "released", "group": "g", "shards": {"a": ["0"]}}, "shards.a[0]", "must be an integer"),
        ({"op": "released", "group": "g", "shards": {"": [0]}}, "shards", "every key must not be empty"),
        ({"op": "released", "group": "", "shards": {}}, "group", "must not be empty"),
        ({"op": "stop", "group": "g"}, "group", "not used by this op"),
        ({"op": "heartbeat", "shards": {}}, "shards", "not used by this op"),
        ({"op": "stop", "why": "x"}, "why", "unknown key"),
        ([], "", "must be an object"),
    ],
)
def test_invalid_control_messages(message: Any, path: str, words: str) -> None:
    found = {p.path: p.message for p in schema_problems("control", message)}
    assert path in found, found
    assert words in found[path]


# -- messages never carry the offending value ---------------------------------------------------------

_values = st.one_of(
    st.text(min_size=0, max_size=40),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(tail=st.text(max_size=40), other=_values)
def test_credential_values_never_appear_in_messages(tail: str, other: Any) -> None:
    secret = "\u2603" + tail  # messages are plain ASCII, so any snowman would be an echo
    for provider, keys in (
        ("sls", ("access_key_id", "access_key_secret", "security_token")),
        ("cls", ("secret_id", "secret_key", "token")),
    ):
        creds = {keys[1]: secret, keys[2]: other, "bogus": secret}
        group = {"provider": provider, "consumer_group": "g1", "credentials": creds, "consumer": other}
        for problem in schema_problems("config", {"groups": [group]}):
            assert "\u2603" not in problem.message
