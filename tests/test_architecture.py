"""The shape of the house, checked: no import cycles, the engine free of the web stack, small files.

Imports are read with `ast` from the source, at module level, inside functions and under
`if TYPE_CHECKING:` alike: a function-level or annotation-only import that closes a loop is still
a cycle between the modules' ideas; it only hides it from the interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search_engine", "lfl_web")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


def imported_names(tree: ast.AST) -> set[str]:
    """Every dotted name imported anywhere in `tree` (its modules, and `from X import y` as X.y)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """module -> the project modules it imports (a `from pkg import name` counts when name is a module)."""
    modules = {module_name(p): p for p in source_files(package)}
    graph = {}
    for name, path in modules.items():
        names = imported_names(ast.parse(path.read_text(), str(path)))
        graph[name] = {n for n in names if n in modules and n != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
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
            strongconnect(v)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    assert cycles(import_graph(package)) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_function_level_and_type_checking_imports_count():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x.hidden\n"
                     "def f():\n    from x import later\n")
    assert imported_names(tree) == {"typing", "typing.TYPE_CHECKING", "x.hidden", "x", "x.later"}


def test_the_engine_never_imports_the_web_stack():
    web = ("django", "celery", "channels", "daphne", "redis", "lfl_web")
    for path in source_files("search_engine"):
        names = imported_names(ast.parse(path.read_text()))
        assert not {n for n in names if n.split(".")[0] in web}, path


def test_the_web_imports_the_engine_through_its_facade_only():
    """lfl_web (migrations included) names no engine module but `search_engine.facade`, and every name
    it imports from there is one the facade offers."""
    import search_engine.facade as facade

    deeper, unknown = [], []
    for path in sorted((ROOT / "lfl_web").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                       [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            rel = str(path.relative_to(ROOT))
            deeper += [(rel, m) for m in modules if m.split(".")[0] == "search_engine" and m != "search_engine.facade"]
            if isinstance(node, ast.ImportFrom) and node.module == "search_engine.facade":
                unknown += [(rel, a.name) for a in node.names if a.name not in facade.__all__]
    assert deeper == [] and unknown == []


def test_the_facade_loads_no_numeric_stack_until_a_heavy_name_is_used():
    code = ("import sys\nfrom search_engine.facade import catalog, load_config, work_estimate, verdict, parse\n"
            "print(sorted(m for m in ('torch', 'sympy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_source_file_is_over_the_size_limit():
    roots = [*(ROOT / p for p in PACKAGES), ROOT / "tests", ROOT / "benchmarks", ROOT / "static" / "js"]
    too_long = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.suffix in (".py", ".js", ".html") and "migrations" not in path.parts and "vendor" not in path.parts:
                lines = len(path.read_text().splitlines())
                if lines > MAX_LINES:
                    too_long[str(path.relative_to(ROOT))] = lines
    for path in (ROOT / "templates").rglob("*.html"):
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            too_long[str(path.relative_to(ROOT))] = lines
    assert too_long == {}


def test_engine_packages_the_web_reads_import_no_numeric_stack():
    code = ("import sys, search_engine, search_engine.catalog, search_engine.config, search_engine.tasks, "
            "search_engine.expr, search_engine.export, search_engine.scoring, search_engine.evolution, "
            "search_engine.population, search_engine.runtime\n"
            "print(sorted(m for m in ('torch', 'sympy', 'numpy', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
