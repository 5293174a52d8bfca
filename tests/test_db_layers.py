"""The database capability's modules import in one direction (a line, not a loop), and none
reaches for a sibling's private (``_name``) helpers: what two of them share has a public
home (``durable`` for files written durably, ``settle`` above target, backups and pitr)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

import nself_builtins.database

PACKAGE = "nself_builtins.database"
FOLDER = Path(nself_builtins.database.__file__).parent


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_database_modules_import_in_one_direction() -> None:
    # grimp reads every import statement, the lazy ones inside functions and the
    # TYPE_CHECKING ones too: a loop through any of them is a loop
    graph = grimp.build_graph("nself_builtins")
    modules = {m for m in graph.modules if m.startswith(PACKAGE + ".")}
    edges = {
        m: {i for i in graph.find_modules_directly_imported_by(m) if i in modules} for m in modules
    }
    assert _cycles(edges) == []
    assert {f"{PACKAGE}.{n}" for n in ("backups", "pitr", "target", "settle")} <= modules


def test_no_module_imports_a_siblings_private_name() -> None:
    reached = []
    for path in sorted(FOLDER.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                reached += [
                    f"{path.relative_to(FOLDER)}: from {'.' * node.level}{node.module} "
                    f"import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and alias.name != "__version__"
                ]
    assert reached == []
