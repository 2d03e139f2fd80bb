"""jsonschema errors -> Problems with messages written here, never jsonschema's own.

A document schema_check passes has none, so jsonschema is imported only for one it does not pass.

jsonschema's default messages embed the offending instance (`'s3cr3t' is too short`), which would
put a secret into a log. Each message here names the rule only; a schema may carry its own
`errorMessage` (the ajv-errors convention) for rules that a regex states badly.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from shardbeat.config import schema_check
from shardbeat.config.expand import CONTROL_MESSAGE, has_control, json_path
from shardbeat.config.model import Problem
from shardbeat.config.problem_summary import SHOWN_PER_KIND, segments
from shardbeat.core.json_kind import json_kind
from shardbeat.schemas import SchemaName, load_schema, schema_text

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

_TYPE_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "null": "null",
}


@functools.cache
def validator_for(name: SchemaName) -> Any:
    # No check_schema here: checking a shipped schema against the 2020-12 metaschema cost ~25 ms of
    # CPU before the first record (every $dynamicRef resolved, every pattern compiled); the test suite
    # checks each shipped schema once instead (tests/test_config_schemas.py).
    from jsonschema import Draft202012Validator  # lazy: only a document schema_check does not pass

    return Draft202012Validator(load_schema(name))


@functools.cache
def _shipped(name: SchemaName) -> Any:
    """The schema as schema_check reads it: parsed once, never mutated."""
    return json.loads(schema_text(name))


def _types(expected: Any) -> str:
    names = [expected] if isinstance(expected, str) else list(expected)
    return " or ".join(_TYPE_NAMES.get(n, n) for n in names)


def _unknown_keys(
    keys: Iterable[str], allowed: Iterable[str], suggest: list[int]
) -> Iterator[tuple[str, str]]:
    """(key, message) for each unknown key, in the order sorted_problems gives them. Only the first
    `suggest[0]` of a document get a suggestion (it counts down): problem_summary shows the first
    SHOWN_PER_KIND of a kind, and difflib costs up to ~0.7 ms a key (seconds for 10,000 groups with a
    typo each, 12 s for one object of 60,000 unknown keys)."""
    import difflib  # lazy: only a config with an unknown key needs it

    names = sorted(allowed)
    plain = f"unknown key; expected one of: {', '.join(names)}" if len(names) <= 6 else "unknown key"
    for key in sorted(keys, key=lambda key: json_path((key,))):
        close: list[str] = []
        if suggest[0] > 0:
            suggest[0] -= 1
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        yield key, f"unknown key (did you mean {close[0]!r}?)" if close else plain


def _first_repeated(items: list[Any]) -> Any:
    seen: list[Any] = []
    for item in items:
        if item in seen:
            return item
        seen.append(item)
    return None


def _numeric(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def problems_for(error: ValidationError, suggest: list[int] | None = None) -> Iterator[Problem]:
    """The problems one jsonschema error stands for; `suggest`: how many unknown keys may still get a
    "did you mean" (shared by a document's errors, see _unknown_keys)."""
    parts = tuple(error.absolute_path)
    path = json_path(parts)
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    if keyword == "required":
        # One error per keyword; list each missing key at its own path.
        which = ""
        if "then" in error.schema_path and isinstance(instance, dict):
            for key in ("provider", "op"):
                if isinstance(instance.get(key), str):
                    which = f" for {key} {instance[key]}"
        for key in expected:
            if isinstance(instance, dict) and key not in instance:
                yield Problem(json_path((*parts, key)), f"required{which}")
        return
    if keyword == "additionalProperties" and isinstance(instance, dict):
        allowed = schema.get("properties", {})
        unknown = (k for k in instance if k not in allowed)
        for key, message in _unknown_keys(unknown, allowed, suggest or [SHOWN_PER_KIND]):
            yield Problem(json_path((*parts, key)), message)
        return
    if keyword == "type":
        yield Problem(path, f"must be {_types(expected)}, not {json_kind(instance)}")
        return
    custom = schema.get("errorMessage")
    message = custom if isinstance(custom, str) else _message(keyword, expected, instance)
    if "propertyNames" in error.schema_path:
        message = f"every key {message}"  # the error is about a key, reported at its object
    yield Problem(path, message)


def _message(keyword: str | None, expected: Any, instance: Any) -> str:
    if keyword == "enum":
        return "must be one of: " + ", ".join(str(v) for v in expected)
    if keyword == "const":
        return f"must be {expected}"
    if keyword in ("minLength", "minItems") and expected == 1:
        return "must not be empty"
    if keyword == "minLength":
        return f"must be at least {expected} characters"
    if keyword == "maxLength":
        return f"must be at most {expected} characters"
    if keyword == "minItems":
        return f"must have at least {expected} items"
    if keyword == "maxItems":
        return f"must have at most {expected} items"
    if keyword == "uniqueItems" and isinstance(instance, list):
        repeated = _first_repeated(instance)
        # Lists in configs hold ids (CLS topics): naming the repeated one is the useful part.
        shown = f" ({repeated!r} appears twice)" if isinstance(repeated, str | int) else ""
        return f"must not repeat an item{shown}"
    if keyword == "minimum":
        return f"must be at least {_numeric(expected)}"
    if keyword == "exclusiveMinimum":
        return f"must be greater than {_numeric(expected)}"
    if keyword == "maximum":
        return f"must be at most {_numeric(expected)}"
    if keyword == "exclusiveMaximum":
        return f"must be less than {_numeric(expected)}"
    if keyword == "pattern":
        return "has an invalid format"
    if keyword == "not" or keyword is None:
        return "is not allowed here"
    return f"is invalid ({keyword})"


def _sort_key(problem: Problem) -> str:
    # groups[2] before groups[10]: path segments compared in turn, indices as numbers (zero-padded),
    # before names; the message last. One string: comparing 60,000 of them is quick.
    pieces = [
        f"\x01{piece[1:-1]:0>20}" if piece[0] == "[" and piece[1:-1].isdigit() else f"\x02{piece}"
        for piece in segments(problem.path)
    ]
    pieces.append(f"\x02{problem.message}")
    return "\x00".join(pieces)


def sorted_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Unique problems in document order of their paths."""
    return sorted(set(problems), key=_sort_key)


# Bounds on one side: a value failing two of them (heartbeat_interval -1 fails both `minimum: 0.1` and
# the shared `exclusiveMinimum: 0`) gets only the stricter, not two messages that seem to disagree.
_LOWER = {"minimum": False, "exclusiveMinimum": True}
_UPPER = {"maximum": False, "exclusiveMaximum": True}


def _bound(error: ValidationError) -> tuple[str, tuple[float, bool]] | None:
    """(side, strictness) of a bound error: larger is stricter on both sides."""
    keyword, value = error.validator, error.validator_value
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if keyword in _LOWER:
        return "lower", (float(value), _LOWER[keyword])
    if keyword in _UPPER:
        return "upper", (-float(value), _UPPER[keyword])
    return None


def schema_problems(name: SchemaName, document: Any) -> list[Problem]:
    """Every violation of schema `name` in `document`, deduplicated and sorted by path."""
    if schema_check.passes(_shipped(name), document):
        return []  # jsonschema would find nothing (see schema_check): no need to load it
    errors = list(validator_for(name).iter_errors(document))
    strictest: dict[tuple[tuple[Any, ...], str], tuple[float, bool]] = {}
    for error in errors:
        if (bound := _bound(error)) is not None:
            key = (tuple(error.absolute_path), bound[0])
            strictest[key] = max(strictest.get(key, bound[1]), bound[1])
    found: list[Problem] = []
    suggest = [SHOWN_PER_KIND]
    for error in errors:
        bound = _bound(error)
        if bound is not None and strictest[(tuple(error.absolute_path), bound[0])] != bound[1]:
            continue
        found.extend(problems_for(error, suggest))
    return sorted_problems(found)


def setting_problems(definition: str, key: str, value: Any, path: str) -> list[Problem]:
    """The config schema's rule for `key` of `$defs/definition` (e.g. slsCredentials role_name) applied
    to a value the config file did not hold (an environment variable, a vendor CLI profile): a setting
    is held to one rule wherever it comes from. Problems at `path`."""
    root = _shipped("config")
    own = root["$defs"][definition]["properties"].get(key)
    if own is None:
        return []  # a setting the schema does not name (none today): nothing to hold it to
    rule = {"$defs": root["$defs"], **own}
    if isinstance(value, str) and has_control(value):
        return [Problem(path, CONTROL_MESSAGE)]  # as expand() holds every string of the document
    if schema_check.passes(rule, value):
        return []
    from jsonschema import Draft202012Validator  # lazy, as validator_for

    errors = Draft202012Validator(rule).iter_errors(value)
    return sorted_problems(Problem(path, p.message) for e in errors for p in problems_for(e))
