"""The package's shape: no import cycles (top-level and function-local imports alike; only imports under
``if TYPE_CHECKING:`` are left out, since they never run) and ``python -m pofa_openvino`` is the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pofa_openvino"

Edges = dict[str, dict[str, int]]  # module -> {imported module: line of the first import}


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under the package directory ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph(root: Path) -> Edges:
    """Which package module imports which, from the AST of each file."""
    modules = module_names(root)
    graph: Edges = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in _executed_imports(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, package, modules):
                if target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def _executed_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
               for child in node.body for n in ast.walk(child)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in skipped]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, package: str, modules: dict[str, Path]) -> set[str]:
    """The package modules an import statement loads: ``from X import y`` loads ``X.y`` when that is a
    module, else ``X``; a dotted name resolves to its longest prefix that is a module."""
    if isinstance(node, ast.Import):
        return {m for m in (_owner(a.name, modules) for a in node.names) if m}
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    found = {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else _owner(base, modules) for a in node.names}
    return {m for m in found if m}


def _owner(dotted: str, modules: dict[str, Path]) -> str | None:
    while dotted and dotted not in modules:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def cycles(graph: Edges) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: Edges, component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(set(graph[node]) & component):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a strongly connected component always has one


def describe(graph: Edges, cycle: list[str]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)) + \
        f" -> {cycle[-1]}"


def test_the_package_has_no_import_cycles():
    graph = import_graph(PACKAGE)
    assert len(graph) > 30 and graph["pofa_openvino.cli"]  # the graph really was read
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(graph, c) for c in found)


@pytest.mark.parametrize(("files", "cycle"), [
    ({"a.py": "from . import b\n", "b.py": "def f():\n    from .a import g\n"}, ["pkg.a", "pkg.b", "pkg.a"]),
    ({"a.py": "import pkg.sub.c\n", "sub/__init__.py": "", "sub/c.py": "from .. import a\n"},
     ["pkg.a", "pkg.sub.c", "pkg.a"]),
    ({"a.py": "from pkg.b import x\n", "b.py": "from .c import y\n", "c.py": "from . import a\n"},
     ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]),
    ({"a.py": "from . import b\n", "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
      "    from .a import g\n"}, None),
    ({"__init__.py": "from .a import f\n", "a.py": "import json\nfrom . import b\n", "b.py": "x = 1\n"}, None),
])
def test_the_cycle_finder_sees_every_kind_of_import(tmp_path, files, cycle):
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert cycles(import_graph(root)) == ([cycle] if cycle else [])


def test_python_dash_m_runs_the_cli(tmp_path):
    version = subprocess.run([sys.executable, "-m", "pofa_openvino", "--version"], capture_output=True, text=True,
                             cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("pofa-openvino "), version.stderr
    bad = subprocess.run([sys.executable, "-m", "pofa_openvino", "validate", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "missing.yaml" in bad.stderr
