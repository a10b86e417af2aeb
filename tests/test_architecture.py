"""The shape the code keeps (issues 14 and 24), checked on the source: data flows one way, no
import cycle (type-checking imports included), one owner of Optuna's private storage, no module
over 300 lines (tests and benchmarks included), a command line that starts without the heavy
libraries. The owners of the contracts are checked in ``tests/test_owners.py``."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGES = ("search", "trainables")
MAX_LINES = 300


def modules() -> dict[str, Path]:
    """Every module of the two packages by dotted name (a package by its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, anywhere in it (functions and TYPE_CHECKING
    blocks included); ``from package import name`` counts ``package.name`` when that is a
    module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def test_data_flows_one_way_and_no_import_cycle():
    found = modules()
    graph = {name: imports(path, set(found)) - {name} for name, path in found.items()}
    upward = [(m, d) for m, deps in graph.items() for d in deps if m.startswith("trainables")
              and d.startswith("search")]  # fmt: skip
    assert upward == [], "trainables must never import search"

    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = "open"
        stack.append(name)
        for dep in sorted(graph[name]):
            if dep.startswith(f"{name}."):
                continue  # a package's __init__ naming its own submodules is not a cycle
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_only_the_records_owner_reaches_into_optunas_storage():
    owner = REPO / "search" / "records" / "trials.py"
    for path in modules().values():
        text = path.read_text()
        if path != owner:
            assert "._storage" not in text and "._trial_id" not in text, path


def test_no_module_is_over_300_lines():
    """The packages, and the tests and benchmarks too (a module past ~300 lines is two
    concepts, STYLE.md)."""
    paths = [REPO / "search.py"]
    for folder in (*PACKAGES, "tests", "benchmarks"):
        paths += sorted((REPO / folder).rglob("*.py"))
    long = {
        str(p.relative_to(REPO)): n
        for p in paths
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def module_level_imports(path: Path) -> set[str]:
    """Every module ``path`` imports when it is imported: its module-level statements, not its
    functions' nor a ``TYPE_CHECKING`` block's."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_command_line_starts_without_the_heavy_libraries():
    """``search.py --help`` and a bad argument answer at once: what the command line imports
    when it starts imports none of the libraries a command needs (the settings schemas'
    pydantic among them); each command imports its own."""
    found = modules()
    heavy = ("pydantic", "torch", "ray", "optuna", "mlflow", "timm")
    todo, seen, offenders = ["search.cli"], set(), []
    while todo:
        name = todo.pop()
        seen.add(name)
        names = module_level_imports(found[name])
        offenders += [(name, n) for n in names if n.split(".")[0] in heavy]
        todo += [n for n in names if n in found and n not in seen]
        todo += [p for n in names for p in _parents(n) if p in found and p not in seen]
    assert offenders == []


def _parents(name: str) -> list[str]:
    """The packages a module's import runs first (``a.b.c``: ``a``, ``a.b``)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]
