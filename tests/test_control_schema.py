"""The hand-written control message checks accept exactly what schemas/control.schema.json accepts."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardbeat.runtime.control import OPS, ControlMessage, message_from
from shardbeat.schemas import load_schema

SCHEMA = load_schema("control")
jsonschema.Draft202012Validator.check_schema(SCHEMA)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_the_schema_lists_the_same_ops() -> None:
    assert tuple(SCHEMA["properties"]["op"]["enum"]) == OPS


names = st.one_of(
    st.text(min_size=0, max_size=3),
    st.just("g" * 255),
    st.just("g" * 256),
    st.integers(-1, 1),
    st.none(),
    st.booleans(),
)
shard_ids = st.one_of(
    st.integers(-2, 5),
    st.sampled_from([1.0, 2.5, -1.0, True, False, "1", None]),
)
shard_maps = st.one_of(
    st.dictionaries(st.text(max_size=2), st.one_of(st.lists(shard_ids, max_size=3), shard_ids), max_size=3),
    st.lists(st.integers(0, 3), max_size=2),
    st.none(),
)
checkpoint_values = st.one_of(
    st.integers(-1, 3),
    st.sampled_from(["", "MA==", "x" * 1024, "x" * 1025, True, None, 1.5, 2.0]),
)
checkpoint_maps = st.one_of(
    st.dictionaries(
        st.text(max_size=2),
        st.one_of(
            st.dictionaries(
                st.sampled_from(["0", "1", "01", "-1", "a", "", "2"]), checkpoint_values, max_size=2
            ),
            checkpoint_values,
        ),
        max_size=2,
    ),
    st.lists(st.integers(0, 3), max_size=1),
    st.none(),
)
fields = {
    "op": st.one_of(st.sampled_from([*OPS, "restart", ""]), st.integers(0, 1)),
    "group": names,
    "provider": st.one_of(st.sampled_from(["sls", "cls", "SLS", ""]), st.integers(0, 1)),
    "consumer": names,
    "shards": shard_maps,
    "checkpoints": checkpoint_maps,
    "epoch": st.sampled_from([0, 3, -1, 2.0, 2.5, True, "1", None]),
    "other": st.integers(0, 1),
}
good_name = st.text(min_size=1, max_size=4)
good_shards = st.dictionaries(
    st.text(min_size=1, max_size=2), st.lists(st.integers(0, 9), max_size=3, unique=True), max_size=3
)
optional_target = {"provider": st.sampled_from(["sls", "cls"]), "consumer": good_name}
good_checkpoints = st.dictionaries(
    st.text(min_size=1, max_size=2),
    st.dictionaries(
        st.integers(0, 9).map(str),
        st.one_of(st.integers(0, 2**40), st.text(min_size=1, max_size=3)),
        max_size=2,
    ),
    max_size=2,
)
valid_documents = st.one_of(
    st.fixed_dictionaries({"op": st.sampled_from(["status", "reload", "stop"])}),
    st.fixed_dictionaries({"op": st.just("heartbeat")}, optional={"group": good_name, **optional_target}),
    st.fixed_dictionaries(
        {"op": st.sampled_from(["released", "held"]), "group": good_name, "shards": good_shards},
        optional=optional_target,
    ),
    st.fixed_dictionaries(
        {
            "op": st.just("released"),
            "group": good_name,
            "shards": good_shards,
            "checkpoints": good_checkpoints,
        },
        optional=optional_target,
    ),
    st.fixed_dictionaries(
        {"op": st.just("commit"), "group": good_name, "checkpoints": good_checkpoints},
        optional={**optional_target, "epoch": st.integers(0, 9)},
    ),
)


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document with at most one field removed, replaced or added."""
    doc: dict[str, Any] = dict(draw(valid_documents))
    change = draw(st.sampled_from(["none", "remove", "replace"]))
    key = draw(st.sampled_from(sorted(fields)))
    if change == "remove":
        doc.pop(key, None)
    elif change == "replace":
        doc[key] = draw(fields[key])
    return doc


documents = st.one_of(
    near_valid(),
    st.fixed_dictionaries({}, optional=fields),
    st.fixed_dictionaries(
        {"op": st.sampled_from(OPS)}, optional={k: v for k, v in fields.items() if k != "op"}
    ),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=3),
    st.none(),
)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(documents)
def test_hand_checks_agree_with_the_schema(doc: Any) -> None:
    ours = isinstance(message_from(doc), ControlMessage)
    assert ours == VALIDATOR.is_valid(doc), (doc, message_from(doc))


def test_agreement_on_chosen_edge_cases() -> None:
    cases: list[Any] = [
        {"op": "released", "group": "g", "shards": {}},
        {"op": "released", "group": "g", "shards": {"t": []}},
        {"op": "released", "group": "g", "shards": {"t": [1, 1.0]}},
        {"op": "held", "group": "g", "shards": {"t": [0, 2**40]}},
        {"op": "heartbeat", "provider": "cls"},
        {"op": "heartbeat", "group": "g", "shards": {}},
        {"op": "status", "provider": "sls"},
        {"op": "stop", "group": "g"},
        {"op": "released", "group": "g" * 255, "shards": {"t": [0]}},
        {"op": "released", "group": "\u00e9" * 255, "shards": {"t": [0]}},
        {"op": "commit", "group": "g", "checkpoints": {}},
        {"op": "commit", "group": "g", "checkpoints": {"t": {"0": "MA==", "7": 12}}},
        {"op": "commit", "group": "g", "checkpoints": {"t": {"007": 1}}},
        {"op": "commit", "group": "g", "checkpoints": {"t": {"0": ""}}},
        {"op": "commit", "group": "g", "checkpoints": {"t": {"0": -1}}},
        {"op": "commit", "group": "g", "checkpoints": {"t": {"0": True}}},
        {"op": "commit", "group": "g", "checkpoints": {"t": {"0": 2.0}}},
        {"op": "commit", "group": "g", "checkpoints": {"t": {"0": 2.5}}},
        {"op": "commit", "group": "g", "checkpoints": {"": {"0": 1}}},
        {"op": "commit", "group": "g", "shards": {"t": [0]}, "checkpoints": {}},
        {"op": "commit", "checkpoints": {"t": {"0": 1}}},
        {"op": "held", "group": "g", "shards": {}, "checkpoints": {}},
        {"op": "commit", "group": "g", "checkpoints": {}, "epoch": 4},
        {"op": "commit", "group": "g", "checkpoints": {}, "epoch": 4.0},
        {"op": "commit", "group": "g", "checkpoints": {}, "epoch": -4},
        {"op": "released", "group": "g", "shards": {}, "epoch": 1},
        {"op": "heartbeat", "epoch": 1},
    ]
    for doc in cases:
        assert isinstance(message_from(doc), ControlMessage) == VALIDATOR.is_valid(doc), doc
