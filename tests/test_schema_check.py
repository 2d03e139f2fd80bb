"""config/schema_check.py says "valid" only where jsonschema finds no error (its one promise), and says
it for every valid document of the shipped schemas (else it would save nothing): checked against
jsonschema itself on fuzzed configs, the example configs, and each keyword's edge cases."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from shardbeat.config import schema_check
from shardbeat.config.expand import expand
from shardbeat.schemas import SCHEMA_NAMES, load_schema
from test_fuzz_config import ENVIRON, VALID, documents, values

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"
CONFIG = load_schema("config")
JUDGE = Draft202012Validator(CONFIG)
KINDS = (dict, list, str, int, float, bool, type(None))


def plain(value: Any) -> bool:
    """Made only of the exact types json.loads gives (no TOML datetimes)."""
    if type(value) is dict:
        return all(type(k) is str and plain(v) for k, v in value.items())
    if type(value) is list:
        return all(plain(v) for v in value)
    return type(value) in KINDS


def agree(schema: dict[str, Any], judge: Any, document: Any) -> None:
    fast = schema_check.passes(schema, document)
    errors = list(judge.iter_errors(document))
    if fast:
        assert errors == [], f"passed a document jsonschema refuses: {errors[0].message}"
    elif plain(document):
        assert errors, "refused (or could not judge) a valid plain JSON document"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_agrees_with_jsonschema_on_fuzzed_configs(doc: Any) -> None:
    agree(CONFIG, JUDGE, doc)
    expanded, _, _ = expand(copy.deepcopy(doc), ENVIRON)  # what config_from_dict validates
    agree(CONFIG, JUDGE, expanded)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SCHEMA_NAMES), values)
def test_agrees_with_jsonschema_on_any_value_for_every_schema(name: str, value: Any) -> None:
    schema = load_schema(name)  # type: ignore[arg-type]
    agree(schema, Draft202012Validator(schema), value)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_the_example_configs_pass_without_jsonschema(path: Path) -> None:
    environ = {"SHARDBEAT_CONSUMER": "node-1", "PROXY_USER": "u", "PROXY_PASSWORD": "p"}
    document, _, _ = expand(json.loads(path.read_text()), {**environ, **_placeholders(path)})
    assert list(JUDGE.iter_errors(document)) == []  # the examples are valid once their variables are set
    assert schema_check.passes(CONFIG, document)


def _placeholders(path: Path) -> dict[str, str]:
    """Every ${VAR} of an example set to a plausible value (ids, keys: letters and digits)."""
    text = path.read_text()
    names = {part.split("}")[0] for part in text.split("${")[1:]}
    return {name: "value1" for name in names}


@pytest.mark.parametrize("provider", ["sls", "cls"])
def test_a_valid_group_passes(provider: str) -> None:
    assert schema_check.passes(CONFIG, {"groups": [VALID[provider]]})


# Each keyword at its edges; every case is also judged by jsonschema (agree), so none can drift.
EDGES: list[tuple[dict[str, Any], Any, bool | None]] = [
    # (schema, value, what passes() must say; None: jsonschema decides alone, passes() must be False)
    ({"type": "integer"}, 3.0, True),  # JSON Schema counts 3.0 as an integer
    ({"type": "integer"}, 3.5, False),
    ({"type": "integer"}, True, False),
    ({"type": "number"}, False, False),
    ({"type": ["string", "null"]}, None, True),
    ({"minimum": 1}, True, True),  # booleans are not numbers: no bound applies
    ({"minimum": 1}, 0.5, False),
    ({"exclusiveMinimum": 0}, 0, False),
    ({"maximum": 5}, math.nan, True),  # NaN compares false both ways, in jsonschema too
    ({"enum": ["a", "b"]}, "b", True),
    ({"enum": ["a"]}, 1, False),
    ({"const": True}, 1, False),  # true is not 1
    ({"const": False}, False, True),
    ({"enum": [1, 2]}, 1, None),  # numbers in an enum: not judged here
    ({"uniqueItems": True}, ["a", "a"], False),
    ({"uniqueItems": True}, [1, 1.0], None),
    ({"uniqueItems": True}, [1, True], None),
    ({"minLength": 2}, "\u00e9", False),  # code points, not bytes
    ({"maxItems": 1}, [1, 2], False),
    ({"pattern": "^a"}, "ba", False),
    ({"pattern": "b"}, "ab", True),  # search, not match
    ({"required": ["x"]}, [], True),  # applies to objects only
    ({"properties": {"a": {"type": "string"}}, "additionalProperties": False}, {"a": "x"}, True),
    ({"properties": {"a": {"type": "string"}}, "additionalProperties": False}, {"b": 1}, False),
    ({"additionalProperties": {"type": "integer"}}, {"b": 1, "c": 2.0}, True),
    ({"propertyNames": {"maxLength": 1}}, {"ab": 1}, False),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1, False),  # valid under both
    ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, 1, True),
    ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, None, False),
    ({"not": {"type": "string"}}, "x", False),
    ({"if": {"const": "a"}, "then": {"minLength": 2}}, "a", False),
    ({"if": {"const": "a"}, "else": {"minLength": 2}}, "b", False),
    ({"then": {"type": "integer"}}, "x", True),  # then without if: no effect
    ({"$ref": "#/$defs/s", "$defs": {"s": {"type": "string"}}}, 1, False),
    ({"$ref": "#/$defs/s", "$defs": {"s": {"type": "string"}}}, "x", True),
    ({"multipleOf": 2}, 4, None),  # unknown here: jsonschema decides
    ({"patternProperties": {"^a": {}}, "additionalProperties": False}, {"ab": 1}, None),
    ({"items": {"type": "string"}, "prefixItems": [{"type": "integer"}]}, [1, "a"], None),
    ({"not": {"multipleOf": 3}}, 2, None),  # "not sure" inside `not` is never read as "invalid"
    ({"type": "object", "properties": {"d": {"$id": "x", "type": "string"}}}, {"d": "v"}, None),
    ({"type": "string"}, Path("x"), None),  # not a JSON value
    ({"type": "object"}, {1: 2}, True),  # keys are not judged unless propertyNames asks
]


@pytest.mark.parametrize(("schema", "value", "expected"), EDGES)
def test_keyword_edges(schema: dict[str, Any], value: Any, expected: bool | None) -> None:
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    verdict = schema_check.passes(root, value)
    assert verdict is (expected is True)
    try:
        errors = list(Draft202012Validator(root).iter_errors(value))
    except Exception:  # jsonschema cannot judge a non-JSON value either
        return
    if expected is not None:
        assert (errors == []) is expected
    elif verdict:
        assert errors == []


def test_a_valid_config_never_imports_jsonschema(tmp_path: Path) -> None:
    """The point of schema_check: jsonschema (and referencing, attrs, ...) stays out of a valid start."""
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"groups": [VALID["sls"], VALID["cls"]]}))
    code = (
        "import sys\n"
        "from shardbeat.config import load_config\n"
        f"load_config({str(config)!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jsonschema', 'referencing', 'attrs', 'attr', 'jsonschema_specifications', 'rpds')))\n"
        "from shardbeat.config import ConfigError, config_from_dict\n"
        "try:\n"
        "    config_from_dict({'groups': [{'provider': 'sls'}]})\n"
        "except ConfigError as exc:\n"
        "    print(exc.problems[0].path, exc.problems[0].message)\n"
        "print('jsonschema' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, second, third = done.stdout.splitlines()
    assert first == "[]"
    assert (second, third) == ("groups[0].consumer_group required", "True")  # jsonschema judges the invalid


# Valid documents of every shipped schema (generated from the schemas by hypothesis-jsonschema, kept
# only where jsonschema finds no error; test_the_seeds_are_valid keeps them so), mutated a little: the
# documents that matter are the ones next to valid, where a wrong "valid" would hide. Random values
# (above) almost never pass the record, reply or control schema, so they test little of passes().
SEEDS: dict[str, list[Any]] = json.loads((Path(__file__).parent / "golden" / "schema_seeds.json").read_text())
EDGE_VALUES = [
    *(0, 1, -1, 1.0, -0.0, 0.5, 2**63, 10**30, 1e308, math.inf, -math.inf, math.nan, True, False, None),
    *(
        "",
        "a",
        "ab",
        "abc\n",
        "a\n",
        "\n",
        "\x00",
        "\ud800",
        "\u00e9",
        "K",
        "\u212a",
        "\u0663",
        "0",
        "01",
        "9" * 30,
    ),
    *("sls", "cls", "json", "begin", "end", "ack", "immediate", "static", "profile", "a" * 129),
    *([], {}, ["a", "a"], [1, 1.0], [1, True], {"a": 1}),
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    items = value.items() if type(value) is dict else enumerate(value) if type(value) is list else ()
    for key, item in items:
        found.extend(_paths(item, (*prefix, key)))
    return found


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


@st.composite
def near_valid(draw: st.DrawFn, name: str) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(SEEDS[name])))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(document)
        path = draw(st.sampled_from(paths))
        target = _at(document, path)
        how = draw(st.sampled_from(["replace", "graft", "drop", "add"]))
        if how == "drop" and type(target) is dict and target:
            del target[draw(st.sampled_from(sorted(target)))]
        elif how == "drop" and type(target) is list and target:
            del target[draw(st.integers(min_value=0, max_value=len(target) - 1))]
        elif how == "add" and type(target) is dict:
            key = draw(st.sampled_from(sorted({str(p[-1]) for p in paths if p} | {"op", "x"})))
            target[key] = copy.deepcopy(draw(st.sampled_from(EDGE_VALUES)))
        elif how == "add" and type(target) is list:
            target.append(copy.deepcopy(target[0] if target else draw(st.sampled_from(EDGE_VALUES))))
        elif path:
            parent = _at(document, path[:-1])
            other = _at(document, draw(st.sampled_from(paths)))
            value = other if how == "graft" else draw(st.sampled_from(EDGE_VALUES))
            parent[path[-1]] = copy.deepcopy(value)
    return document


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_the_seeds_are_valid(name: str) -> None:
    judge = Draft202012Validator(load_schema(name))  # type: ignore[arg-type]
    assert SEEDS[name] and all(list(judge.iter_errors(seed)) == [] for seed in SEEDS[name])


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_agrees_with_jsonschema_next_to_valid_documents(name: str) -> None:
    schema = load_schema(name)  # type: ignore[arg-type]
    judge = Draft202012Validator(schema)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(near_valid(name))
    def check(document: Any) -> None:
        # The promise only: next to valid, "not sure" is allowed (uniqueItems over numbers, ...).
        if schema_check.passes(schema, document):
            errors = list(judge.iter_errors(document))
            assert errors == [], f"passed a document jsonschema refuses: {errors[0].message}"

    check()
