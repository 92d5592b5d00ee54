"""The house's layers, read from the source: no import runs upward, none goes round in a circle, no module is huge.

Layers, lowest first (docs/DESIGN.md, "Layers"): the core (everything at the package top and `etl/`), then
`runbook/` (one module per runbook step), then `cli/` (click only). A module may import its own layer and
the ones below it. Only `cli/` imports click or rich.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "starforge_backfill"
MAX_LINES = 700


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    if module.startswith("starforge_backfill.cli") or module == "starforge_backfill.__main__":
        return 2  # `python -m starforge_backfill` is the CLI's second entry point
    if module.startswith("starforge_backfill.runbook"):
        return 1
    return 0


def _imports(module: str) -> set[str]:
    """Every starforge_backfill module (or third-party top-level package) that `module` imports, anywhere."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{module}: relative import; the package uses absolute ones"
            base = node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES}
    return found


def _internal(module: str) -> set[str]:
    return {m for m in _imports(module) if m in MODULES and m != module}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_runs_upward(module: str) -> None:
    upward = sorted(m for m in _internal(module) if _layer(m) > _layer(module))
    assert not upward, f"{module} (layer {_layer(module)}) imports a higher layer: {upward}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) < 2))
def test_only_the_cli_imports_click_or_rich(module: str) -> None:
    ui = sorted(m for m in _imports(module) if m.split(".")[0] in ("click", "rich"))
    assert not ui, f"{module} imports {ui}: rendering belongs in cli/"


def test_no_import_cycle() -> None:
    graph = {m: _internal(m) - {p for p in MODULES if m.startswith(p + ".")} for m in MODULES}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(n) :], n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_700_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines (split it by what it holds)"
