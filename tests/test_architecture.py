"""The package's layering, read from its import graph: no module imports the command line, and no import circle.

The graph is built from the source with `ast`: one node per module of ``advtrain``, one edge per ``import`` or
``from ... import`` of another advtrain module anywhere in the file — at module level or inside a function (a
function-level import still closes a circle when it runs), but not under ``if TYPE_CHECKING:`` (never executed).
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``. A circle is a strongly
connected component of more than one module (Tarjan's algorithm) or a module importing itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "advtrain"
CLI = ("advtrain.cli", "advtrain.commands")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_graph() -> dict[str, set[str]]:
    """``{module: {advtrain modules it imports}}``."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        skipped: set[int] = set()
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _is_type_checking(node):
                skipped |= {id(n) for child in node.body for n in ast.walk(child)}
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports_it_should():
    graph = import_graph()
    assert "advtrain.pipeline" in graph["advtrain.commands.train"]  # module level
    assert "advtrain.pipeline" in graph["advtrain.commands.evaluate"]  # inside `main`
    assert "advtrain.demo" in graph["advtrain.commands.demo"]  # `from .. import demo`
    assert "advtrain.training" not in graph["advtrain"]  # TYPE_CHECKING only


def test_no_module_of_the_package_imports_the_command_line():
    graph = import_graph()
    offenders = {
        module: sorted(t for t in targets if t.startswith(CLI))
        for module, targets in graph.items()
        if not module.startswith(CLI) and any(t.startswith(CLI) for t in targets)
    }
    assert offenders == {}


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_a_circle_is_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _third_party_imports(path: Path) -> set[str]:
    """The top-level names of the absolute imports anywhere in a file (``import trl.x``, ``from trl import y``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.partition(".")[0])
    return names


def test_only_the_trl_integration_imports_trl():
    """TRL is an optional extra: `import advtrain` (and `advtrain.integrations`) must work without it, so only
    `advtrain.integrations.trl` imports it, and no other module of the package imports that one."""
    modules = _modules()
    assert "advtrain.integrations.trl" in modules
    importers = sorted(name for name, path in modules.items() if "trl" in _third_party_imports(path))
    assert importers == ["advtrain.integrations.trl"]
    graph = import_graph()
    assert sorted(m for m, targets in graph.items() if "advtrain.integrations.trl" in targets) == []
