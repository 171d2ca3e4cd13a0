"""Imports inside a package run one way: no module imports, at its top or hidden in a function, a
module that imports it back (directly or through others). Read from the source (AST), so an
import that only runs on some path counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vista_sql

ROOT = Path(vista_sql.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, package: str, modules: set[str]) -> set[str]:
    """The modules of ``package`` that the module at ``path`` imports, anywhere in its code
    (``if TYPE_CHECKING:`` blocks left out: they never run)."""
    tree = ast.parse(path.read_text())
    checking = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
        for statement in block.body
        for node in ast.walk(statement)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in modules)
    found.discard(_module_name(path))
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (the package's own ``__init__`` left out as a
    target: every submodule's import runs it first anyway)."""
    directory = ROOT.parent.joinpath(*package.split("."))
    paths = sorted(directory.rglob("*.py"))
    modules = {_module_name(path) for path in paths} - {package}
    return {_module_name(path): _imports(path, package, modules) for path in paths}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order, the first repeated), or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found is not None:
                    return found
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found is not None:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_chain() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize(
    "package",
    ["vista_sql.grammar", "vista_sql.logical.models", "vista_sql.physical.store", "vista_sql.udfs"],
)
def test_imports_inside_the_package_run_one_way(package: str) -> None:
    graph = import_graph(package)
    assert len(graph) > 2
    assert cycle(graph) is None


def test_the_grammar_modules_import_in_the_order_its_docstring_states() -> None:
    graph = import_graph("vista_sql.grammar")
    assert graph["vista_sql.grammar.expressions"] == set()
    assert graph["vista_sql.grammar.parser"] == {"vista_sql.grammar.expressions"}
    importers = {
        module for module, targets in graph.items() if "vista_sql.grammar.dialect" in targets
    }
    assert importers == {"vista_sql.grammar"}
