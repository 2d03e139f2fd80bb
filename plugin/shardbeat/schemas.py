"""The JSON Schemas (config, record, control, reply, validation), from the wheel or from the repository.

A wheel carries them as `shardbeat/schemas/*.schema.json` (pyproject force-include); an editable
install does not, so the repository's top-level `schemas/` directory is the fallback.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal, get_args

SchemaName = Literal["config", "record", "control", "reply", "validation"]
SCHEMA_NAMES: tuple[str, ...] = get_args(SchemaName)

_PACKAGED = Path(__file__).with_name("schemas")  # a wheel's copy, on the file system
_REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


class SchemaNotFound(LookupError):
    pass


@functools.cache
def schema_text(name: SchemaName) -> str:
    """The schema file's text, exactly as shipped."""
    if name not in SCHEMA_NAMES:
        raise SchemaNotFound(f"no schema named {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    filename = f"{name}.schema.json"
    # The wheel's copy beside this module, else the repository's (an editable install); importlib's
    # resources (~3 ms more, with zipfile and tempfile) only for a package that is not plain files.
    for path in (_PACKAGED / filename, _REPO_SCHEMAS / filename):
        if path.is_file():
            return path.read_text(encoding="utf-8")
    from importlib import resources

    packaged = resources.files("shardbeat") / "schemas" / filename
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    raise SchemaNotFound(f"schema {filename} is neither packaged nor in {_REPO_SCHEMAS}")


def load_schema(name: SchemaName) -> dict[str, Any]:
    """A fresh dict each call (callers may mutate it); the file is read once per process."""
    schema: dict[str, Any] = json.loads(schema_text(name))
    return schema
