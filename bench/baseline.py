"""The figures of an earlier run, shown beside this run's ("before -> now") so a change reads as a change.

The committed baseline is bench/results/baseline-before-issue10.json: a verbatim copy of the full run
measured at commit be58c49, before issue 10 rewrote the runner. Rows are matched by what they are (a
client's name, a number of groups, a step's label), never by position; a figure without a
counterpart is shown alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).resolve().parent / "results" / "baseline-before-issue10.json"
ARROW = " → "


class _Missing:
    """No counterpart in the baseline (as opposed to a counterpart whose figure is n/a)."""


MISSING: Any = _Missing()


def load(path: Path | None) -> dict[str, Any] | None:
    """The baseline's results, or None (no path given). A path that is given but unreadable is an
    error the caller reports: a comparison silently against nothing would read as "no change"."""
    if path is None:
        return None
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or "machine" not in doc:
        raise ValueError(f"{path}: not a benchmark results file (no 'machine')")
    doc["_path"] = str(path)
    return doc


def number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def pair(old: Any, new: float | None, digits: int = 1) -> str:
    """'old -> new', or new alone when the baseline has no such figure."""
    if old is MISSING:
        return number(new, digits)
    return f"{number(old, digits)}{ARROW}{number(new, digits)}"


def texts(old: Any, new: str) -> str:
    return new if old is MISSING or old is None else f"{old}{ARROW}{new}"


def get(row: dict[str, Any] | None, key: str) -> Any:
    return MISSING if row is None or key not in row else row[key]


def client_row(base: dict[str, Any] | None, client: dict[str, Any]) -> dict[str, Any] | None:
    """The baseline's row of the same per-beat client: same name, else the only one of its service and
    kind on both sides (a floor or SDK renamed keeps its history)."""
    if base is None or not base.get("per_beat"):
        return None
    old = base["per_beat"]["clients"]
    for row in old:
        if row["name"] == client["name"]:
            return dict(row)
    same = [r for r in old if (r["provider"], r["kind"]) == (client["provider"], client["kind"])]
    return dict(same[0]) if len(same) == 1 and client["kind"] in ("floor", "sdk") else None


def scale_row(base: dict[str, Any] | None, groups: int) -> dict[str, Any] | None:
    for row in (base or {}).get("scale") or []:
        if row["groups"] == groups:
            return dict(row)
    return None


def describe(base: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    """The lines that say what "before" is, and warn when it ran elsewhere."""
    m = base["machine"]
    lines = [
        f"Figures read **before{ARROW}now**: before is `{Path(base['_path']).name}` (run {m['date']}, "
        f"commit {m['commit']}); a figure shown alone has no counterpart there.",
    ]
    if (m.get("cpu"), m.get("cores"), m.get("python")) != (
        machine.get("cpu"),
        machine.get("cores"),
        machine.get("python"),
    ):
        lines.append(
            f"**The baseline ran on another machine or Python ({m.get('cpu')}, {m.get('cores')} cores, "
            f"Python {m.get('python')}): compare ratios to the floor, not absolute figures.**"
        )
    return lines
