"""Many problems of one kind, said once: a config with 60,000 unknown keys gets a few lines, not 60,000.

`summarise(problems)` keeps, for each kind of problem (its message without the parts that name a key,
a value or an index, so every "unknown key" is one kind), the first SHOWN_PER_KIND in document order,
and says the rest in one line after the last one shown, at the deepest path they all share:

    groups[3].k1: unknown key
    ...
    groups[3]: and 59990 more, all under it: unknown key (the last at groups[3].k9999)

Past MAX_SHOWN lines in all, the remaining problems of every kind are said that way too. Pure, and
linear in the number of problems (sorting aside): a huge config is reported as fast as it is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shardbeat.config.model import Problem, printable
from shardbeat.core.redaction import redact

SHOWN_PER_KIND = 10
MAX_SHOWN = 200

# a path's segments: a name, [index] or ["quoted key"] (config/expand.py json_path writes them)
_SEGMENT = re.compile(r'\[(?:\d+|"(?:[^"\\]|\\.)*")\]|[^.\[]+')
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True, slots=True)
class Omitted:
    """`count` problems of `kind` not shown, all under `path` ("" : the document), the last at `last`."""

    path: str
    kind: str
    count: int
    last: str

    def as_problem(self) -> Problem:
        last = self.last or "(root)"
        return Problem(self.path, f"and {self.count} more, all under it: {self.kind} (the last at {last})")


def kind_of(message: str) -> str:
    """What problems have in common when only their key, value or index differs: "unknown key (did you
    mean 'x'?)" and "unknown key" are one kind, "same consumer as groups[3]" and "...groups[7]" too."""
    for stop in (" (", "; "):
        cut = message.find(stop)
        if cut > 0:
            message = message[:cut]
    return _INDEX.sub("[...]", message)


def segments(path: str) -> list[str]:
    return _SEGMENT.findall(path)


def _joined(parts: Sequence[str]) -> str:
    out = ""
    for part in parts:
        out += part if not out or part.startswith("[") else f".{part}"
    return out


def summarise(problems: Iterable[Problem]) -> list[Problem | Omitted]:
    """The problems to show, in the order given, and for each kind with more, one Omitted right after
    its last problem shown. Give them sorted (schema_errors.sorted_problems)."""
    shown: list[Problem] = []
    counts: dict[str, int] = {}
    hidden: dict[str, list[Problem]] = {}
    after: dict[str, int] = {}  # kind -> index in `shown` of its last problem shown
    for problem in problems:
        kind = kind_of(problem.message)
        seen = counts.get(kind, 0)
        counts[kind] = seen + 1
        if seen < SHOWN_PER_KIND and len(shown) < MAX_SHOWN:
            after[kind] = len(shown)
            shown.append(problem)
        else:
            hidden.setdefault(kind, []).append(problem)
    if not hidden:
        return list(shown)
    by_position: dict[int, list[Problem | Omitted]] = {}
    for kind, left in hidden.items():
        line = left[0] if len(left) == 1 else _omitted(kind, left)  # 1: a summary would be no shorter
        by_position.setdefault(after.get(kind, len(shown) - 1), []).append(line)
    lines: list[Problem | Omitted] = []
    for index, problem in enumerate(shown):
        lines.append(problem)
        lines.extend(by_position.pop(index, ()))
    for rest in by_position.values():  # kinds none of which could be shown (past MAX_SHOWN)
        lines.extend(rest)
    return lines


def _omitted(kind: str, left: list[Problem]) -> Omitted:
    common = segments(left[0].path)
    for problem in left[1:]:
        if not common:
            break
        parts = segments(problem.path)
        size = 0
        for mine, theirs in zip(common, parts, strict=False):
            if mine != theirs:
                break
            size += 1
        del common[size:]
    if all(problem.path == left[0].path for problem in left):
        return Omitted(left[0].path, kind, len(left), left[-1].path)  # all at one path (a file's name too)
    if len(common) == len(segments(left[-1].path)):
        common = common[:-1]  # one of them at the path all share: said at its parent, as being under it
    return Omitted(_joined(common), kind, len(left), left[-1].path)


def summary_lines(problems: Iterable[Problem], prefix: str = "") -> list[str]:
    """The text of `summarise`: one line per problem shown or kind summarised."""
    return [
        prefix + str(item.as_problem() if isinstance(item, Omitted) else item) for item in summarise(problems)
    ]


def validation_document(
    problems: Sequence[Problem], warnings: Sequence[Problem], *, structure_only: bool = False
) -> dict[str, Any]:
    """`validate --format json`'s answer (schemas/validation.schema.json): the problems (or, when there
    are none, the warnings) as `summarise` shows them, and per kind what was left out."""
    document: dict[str, Any] = {"ok": not problems, "structure_only": structure_only}
    for name, found in (("problems", problems), ("warnings", warnings)):
        items = summarise(found)
        document[name] = [_entry(item) for item in items if isinstance(item, Problem)]
        document[f"{name}_omitted"] = [
            {"path": item.path, "kind": _text(item.kind), "count": item.count, "last": _text(item.last)}
            for item in items
            if isinstance(item, Omitted)
        ]
    return document


def _entry(problem: Problem) -> dict[str, str]:
    return {"path": _text(problem.path), "message": _text(problem.message)}


def _text(value: str) -> str:
    """As Problem's own text: masked and printable (a key from the file may hold escapes, or a secret)."""
    return printable(redact(value))
