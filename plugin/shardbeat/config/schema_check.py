"""A yes-or-not-sure check of a document against a shipped JSON Schema (draft 2020-12), so that a valid
config never loads jsonschema: importing it (with referencing, attrs and jsonschema_specifications) and
building its validator cost ~50-80 ms of CPU before the first record, on every start.

`passes(schema, document)` is True only when jsonschema would find no error; otherwise (an error, or
anything it cannot judge exactly) it is False and schema_errors hands the document to jsonschema,
which stays the judge of what is wrong and how it is reported. So the one property that matters is:
passes() => jsonschema's `iter_errors` yields nothing. It holds by construction:
- each keyword it knows is evaluated exactly as jsonschema's own (jsonschema/_keywords.py), on values
  of the exact JSON types json.loads and tomllib give (anything else is "not sure");
- a keyword it does not know, a `$ref` outside `#/$defs/`, a nested `$id`, or an `enum`/`const`/
  `uniqueItems` over values it cannot compare exactly make the whole answer "not sure".
Verdicts inside `not`, `oneOf` and `if` must be exact both ways, which is why "not sure" is an exception
that ends the check rather than a False. tests/test_schema_check.py compares it with jsonschema on
every example and test config and on generated documents.
"""

from __future__ import annotations

import re
from typing import Any

# Keywords that assert nothing for jsonschema's Draft202012Validator as schema_errors builds it.
_ANNOTATIONS = frozenset(
    ("$schema", "$comment", "$defs", "title", "description", "default", "examples", "errorMessage")
)
_KINDS: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


class _NotSure(Exception):
    pass


def passes(schema: dict[str, Any], document: Any) -> bool:
    """True only if `document` is valid against `schema` (a root schema whose `$ref`s point into its
    own `$defs`); False when it is not, or when this check cannot tell."""
    try:
        return _Check(schema).valid(schema, document)
    except (_NotSure, RecursionError):
        return False


def _kind(value: Any) -> str:
    try:
        return _KINDS[type(value)]
    except KeyError:
        raise _NotSure from None  # a subclass or a non-JSON value (a TOML date): jsonschema decides


def _has_type(value: Any, name: str) -> bool:
    kind = _kind(value)
    if name == "number":
        return kind in ("integer", "number")
    if name == "integer":
        return kind == "integer" or (kind == "number" and value.is_integer())
    if name in ("object", "array", "string", "boolean", "null"):
        return kind == name
    raise _NotSure  # jsonschema raises UnknownType: let it


def _equal(value: Any, expected: Any) -> bool:
    """jsonschema's `equal(value, expected)` where `expected` is a string or a boolean."""
    _kind(value)
    if type(expected) is str:
        return bool(value == expected)  # type(value) is exact: no str subclass compares equal by surprise
    if type(expected) is bool:
        return value is expected  # jsonschema keeps true apart from 1 and false apart from 0
    raise _NotSure


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _search(pattern: str, text: str) -> bool:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern)  # jsonschema: re.search(pattern, text)
    return compiled.search(text) is not None


class _Check:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def valid(self, schema: Any, value: Any) -> bool:
        if schema is True or schema is False:
            return schema
        if type(schema) is not dict:
            raise _NotSure
        if "$id" in schema and schema is not self.root:
            raise _NotSure  # a new base URI for the $refs below
        for keyword, expected in schema.items():
            if keyword in _ANNOTATIONS or keyword == "$id":
                continue
            if keyword in ("then", "else"):
                continue  # evaluated with `if`
            check = _KEYWORDS.get(keyword)
            if check is None:
                raise _NotSure
            if not check(self, expected, value, schema):
                return False
        return True

    def ref(self, ref: Any, value: Any, schema: dict[str, Any]) -> bool:
        if type(ref) is not str or not ref.startswith("#/$defs/") or "~" in ref or "%" in ref:
            raise _NotSure
        target = self.root.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
        if target is None:
            raise _NotSure  # jsonschema raises Unresolvable
        return self.valid(target, value)


def _type(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    names = [expected] if type(expected) is str else expected
    return any(_has_type(value, name) for name in names)


def _enum(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    return any(_equal(value, each) for each in expected)


def _const(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    return _equal(value, expected)


def _required(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    return _kind(value) != "object" or all(key in value for key in expected)


def _properties(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    if _kind(value) != "object":
        return True
    return all(check.valid(sub, value[key]) for key, sub in expected.items() if key in value)


def _additional(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    if _kind(value) != "object":
        return True
    if "patternProperties" in schema:
        raise _NotSure
    known = schema.get("properties", {})
    return all(check.valid(expected, item) for key, item in value.items() if key not in known)


def _property_names(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    return _kind(value) != "object" or all(check.valid(expected, key) for key in value)


def _items(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    if _kind(value) != "array":
        return True
    if "prefixItems" in schema:
        raise _NotSure
    return all(check.valid(expected, item) for item in value)


def _unique(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    if expected is False or _kind(value) != "array":
        return True
    if expected is not True or not all(type(item) is str for item in value):
        raise _NotSure  # jsonschema's equality over mixed values (1, 1.0, true): let it judge
    return len(set(value)) == len(value)


def _size(kind: str, fails: Any) -> Any:
    """minLength, maxItems, ...: jsonschema compares len() of a value of `kind` only."""

    def size(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
        return _kind(value) != kind or not fails(len(value), expected)

    return size


def _bound(fails: Any) -> Any:
    """minimum, exclusiveMaximum, ...: jsonschema compares numbers only (never booleans)."""

    def bound(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
        return _kind(value) not in ("integer", "number") or not fails(value, expected)

    return bound


def _pattern(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    return _kind(value) != "string" or _search(expected, value)


def _all_of(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    return all(check.valid(sub, value) for sub in expected)


def _any_of(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    # Every branch judged (no short cut): a "not sure" in any branch ends the check.
    return [check.valid(sub, value) for sub in expected].count(True) >= 1


def _one_of(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    return [check.valid(sub, value) for sub in expected].count(True) == 1


def _not(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    return not check.valid(expected, value)


def _if(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    branch = "then" if check.valid(expected, value) else "else"
    return branch not in schema or check.valid(schema[branch], value)


def _ref(check: _Check, expected: Any, value: Any, schema: dict[str, Any]) -> bool:
    return check.ref(expected, value, schema)


_KEYWORDS: dict[str, Any] = {
    "type": _type,
    "enum": _enum,
    "const": _const,
    "required": _required,
    "properties": _properties,
    "additionalProperties": _additional,
    "propertyNames": _property_names,
    "items": _items,
    "uniqueItems": _unique,
    "minLength": _size("string", lambda n, bound: n < bound),
    "maxLength": _size("string", lambda n, bound: n > bound),
    "minItems": _size("array", lambda n, bound: n < bound),
    "maxItems": _size("array", lambda n, bound: n > bound),
    "minimum": _bound(lambda x, bound: x < bound),
    "maximum": _bound(lambda x, bound: x > bound),
    "exclusiveMinimum": _bound(lambda x, bound: x <= bound),
    "exclusiveMaximum": _bound(lambda x, bound: x >= bound),
    "pattern": _pattern,
    "allOf": _all_of,
    "anyOf": _any_of,
    "oneOf": _one_of,
    "not": _not,
    "if": _if,
    "$ref": _ref,
}
