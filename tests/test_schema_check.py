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
