"""The house reads top-down: cli -> runtime shell -> driver (core) <- providers.

core/ imports nothing of ours but core; providers/ import only core and providers; neither reaches
into runtime/, config/, views/, emulator/ or cli. A module that breaks the arrow fails here by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "plugin" / "shardbeat"
ALLOWED = {"core": ("shardbeat.core",), "providers": ("shardbeat.core", "shardbeat.providers")}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, "." * node.level + (node.module or "")))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_inner_layers_import_only_inward(layer: str) -> None:
    wrong = []
    for path in sorted((PACKAGE / layer).glob("*.py")):
        for line, module in _imports(path):
            ours = module.startswith("shardbeat") or module.startswith(".")
            # The package root holds nothing but its version.
            if ours and module != "shardbeat" and not module.startswith(ALLOWED[layer]):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not wrong, "arrows must point inward:\n" + "\n".join(wrong)


def test_the_checker_sees_a_wrong_arrow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from shardbeat.runtime.runner import Runner\nimport shardbeat.config\n")
    assert [m for _, m in _imports(bad)] == ["shardbeat.runtime.runner", "shardbeat.config"]
