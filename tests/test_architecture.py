"""The package's shape: no import cycles (top-level and function-local imports alike; only imports under
``if TYPE_CHECKING:`` are left out, since they never run), a runtime that imports only its allow-list,
and ``python -m pofa_openvino`` is the CLI."""

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
    return {m for m in (_owner(name, modules) for name in _imported_names(node, package, modules)) if m}


def _imported_names(node: ast.Import | ast.ImportFrom, package: str, modules: dict[str, Path]) -> list[str]:
    """The dotted names an import statement loads: ``from X import y`` is ``X.y`` when that is a module."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


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


# What pofa_openvino/runtime/ may import besides the standard library, pofa_openvino.errors and itself.
RUNTIME_LIBRARIES = frozenset({"openvino", "openvino_tokenizers", "numpy"})
SERVER_LIBRARIES = frozenset({"starlette", "uvicorn"})  # the `serve` extra: in runtime/serve.py, inside functions


def runtime_violations(package: Path) -> list[str]:
    """Every import under ``package/runtime`` outside the runtime's allow-list, as ``module line N: name``.
    Top-level, function-local and ``if TYPE_CHECKING:`` imports alike: the runtime may not even name the
    toolkit."""
    modules = module_names(package)
    runtime, server = f"{package.name}.runtime", f"{package.name}.runtime.serve"
    found = []
    for name, path in modules.items():
        if name != runtime and not name.startswith(f"{runtime}."):
            continue
        tree = ast.parse(path.read_text(), str(path))
        local = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                 for n in ast.walk(f)}
        package_of = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for imported in _imported_names(node, package_of, modules):
                top = imported.partition(".")[0]
                allowed = (top in sys.stdlib_module_names or top in RUNTIME_LIBRARIES
                           or imported in (f"{package.name}.errors", runtime) or imported.startswith(f"{runtime}.")
                           or (top in SERVER_LIBRARIES and name == server and id(node) in local))
                if not allowed:
                    found.append(f"{name} line {node.lineno}: {imported}")
    return found


def test_the_runtime_imports_only_its_allow_list():
    assert len([m for m in module_names(PACKAGE) if m.startswith("pofa_openvino.runtime.")]) >= 8  # really read
    found = runtime_violations(PACKAGE)
    assert not found, "the runtime imports outside its allow-list (stdlib, openvino, openvino_tokenizers, numpy, " \
        "pofa_openvino.errors, pofa_openvino.runtime; starlette/uvicorn inside runtime/serve.py functions):\n" + \
        "\n".join(found)


@pytest.mark.parametrize(("files", "found"), [
    ({"runtime/a.py": "import json, numpy\nfrom ..errors import E\nfrom .. import errors\nfrom . import b\n",
      "runtime/b.py": "from pkg.runtime.a import x\n", "errors.py": ""}, []),
    ({"runtime/a.py": "def f():\n    from ..recipe import R\n", "recipe.py": ""}, ["pkg.runtime.a line 2: pkg.recipe"]),
    ({"runtime/a.py": "from .. import errors, rundir\n", "errors.py": "", "rundir.py": ""},
     ["pkg.runtime.a line 1: pkg.rundir"]),
    ({"runtime/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"},
     ["pkg.runtime.a line 3: torch"]),
    ({"runtime/serve.py": "import uvicorn\ndef f():\n    import starlette.applications\n"},
     ["pkg.runtime.serve line 1: uvicorn"]),
    ({"runtime/a.py": "async def f():\n    from starlette.routing import Route\n"},
     ["pkg.runtime.a line 2: starlette.routing"]),
    ({"runtime/__init__.py": "def __getattr__(name):\n    from .. import pipeline\n", "pipeline.py": ""},
     ["pkg.runtime line 2: pkg.pipeline"]),
])
def test_the_runtime_contract_sees_every_kind_of_import(tmp_path, files, found):
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", "runtime/__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert runtime_violations(root) == found


def test_python_dash_m_runs_the_cli(tmp_path):
    version = subprocess.run([sys.executable, "-m", "pofa_openvino", "--version"], capture_output=True, text=True,
                             cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("pofa-openvino "), version.stderr
    bad = subprocess.run([sys.executable, "-m", "pofa_openvino", "validate", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "missing.yaml" in bad.stderr
