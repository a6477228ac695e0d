"""The modules of fxtrace import each other without cycles.

The graph is read from the source with `ast`, so an import inside a function (a "late" import,
which hides a cycle from the interpreter at import time) is an edge like any other. Imports under
`if TYPE_CHECKING:` never run and are left out. An edge goes to the module named: `from .a import
b` is an edge to `a.b` when that is a module, else to `a` (its `__init__`). The implicit import
of parent packages is not an edge, as in import-linter: otherwise every module would reach
`fxtrace/__init__.py` and through it the whole package.

The layer order itself is import-linter's contract in pyproject.toml (`make lint`).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

PACKAGE = "fxtrace"
ROOT = Path(__file__).resolve().parent.parent


def module_files(root: Path = ROOT, package: str = PACKAGE) -> Dict[str, Path]:
    """Every module of `package` under `root`, by dotted name (a package by its `__init__`)."""
    files = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> List[ast.stmt]:
    """Every import statement of the module, at any depth, except under `if TYPE_CHECKING`."""
    found: List[ast.stmt] = []
    stack: List[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            continue
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = list(node.orelse)
        stack.extend(children)
    return found


def _base(module: str, is_package: bool, stmt: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` statement reads from."""
    if not stmt.level:
        return stmt.module or ""
    parts = module.split(".")
    # A package's own relative imports start from itself, a module's from its package.
    keep = len(parts) - stmt.level + (1 if is_package else 0)
    base = ".".join(parts[:keep])
    return f"{base}.{stmt.module}" if stmt.module else base


def import_graph(files: Optional[Dict[str, Path]] = None) -> Dict[str, Set[str]]:
    """Edges between the modules of the package: `graph[a]` holds every module `a` imports."""
    files = module_files() if files is None else files
    graph: Dict[str, Set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for stmt in _imports(ast.parse(path.read_text(), str(path))):
            targets: List[str] = []
            if isinstance(stmt, ast.Import):
                targets = [alias.name for alias in stmt.names]
            elif isinstance(stmt, ast.ImportFrom):
                base = _base(name, is_package, stmt)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in stmt.names]
            graph[name].update(t for t in targets if t in files and t != name)
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle of `graph` as `[a, b, ..., a]`, or None. Deterministic: sorted walk order."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: finished, no cycle through it
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for succ in sorted(graph.get(node, ())):
            if state.get(succ) == 1:
                return path[path.index(succ):] + [succ]
            if succ not in state:
                cycle = visit(succ)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle in each group of modules that reach each other (strongly connected component)."""
    found: List[List[str]] = []
    remaining = dict(graph)
    while True:
        cycle = find_cycle(remaining)
        if not cycle:
            return found
        found.append(cycle)
        # Drop the whole component: every module reachable from the cycle and reaching back.
        component = _reach(remaining, cycle[0]) & _reach(_reverse(remaining), cycle[0])
        remaining = {n: s - component for n, s in remaining.items() if n not in component}


def _reach(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    seen, stack = {start}, [start]
    while stack:
        for succ in graph.get(stack.pop(), ()):
            if succ not in seen:
                seen.add(succ)
                stack.append(succ)
    return seen


def _reverse(graph: Dict[str, Set[str]]) -> Dict[str, Set[str]]:
    rev: Dict[str, Set[str]] = {n: set() for n in graph}
    for node, succs in graph.items():
        for succ in succs:
            rev.setdefault(succ, set()).add(node)
    return rev


def test_graph_sees_late_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n    return b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
        "import pkg.a\n"
    )
    graph = import_graph(module_files(tmp_path, "pkg"))
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(),
                     "pkg.sub.b": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]


def test_find_cycle_on_acyclic_graph() -> None:
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_cycles_names_one_per_component() -> None:
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}, "e": {"a"}}
    assert cycles(graph) == [["a", "b", "a"], ["c", "d", "c"]]


def test_fxtrace_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "fxtrace.api" in graph and graph["fxtrace.api"], "the graph must see fxtrace's imports"
    found = cycles(graph)
    if found:
        pytest.fail("import cycles in fxtrace (late imports included):\n"
                    + "\n".join(" -> ".join(cycle) for cycle in found))
