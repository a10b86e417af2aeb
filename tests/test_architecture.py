"""The shape the code keeps (issues 14 and 24), checked on the source: data flows one way, no
import cycle (type-checking imports included), one owner of Optuna's private storage, one owner
of a trial's life in Optuna and MLflow (the study's record) with thin Ray adapters, tag and
attribute keys as constants in one module, no module over 300 lines (tests and benchmarks
included)."""

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


RECORD = "search.records.study_record"
TRIALS = "search.records.trials"
LINEAGE = "search.records.lineage"
# What writes a trial in the Optuna storage (trials.py) and its MLflow run (lineage.py): the
# study's record calls them, nothing else does.
TRIAL_WRITERS = {"link_ray", "report", "set_node", "attach_run", "end", "interrupt"}
# Optuna's own writes of a trial, made by trials.py only.
OPTUNA_WRITES = {
    "tell",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
}
RECEIVERS = ("tune", "trials")


def trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text()) for name, path in modules().items()}


def used_from(tree: ast.Module, module: str) -> set[str]:
    """The names ``tree`` takes from ``module``: ``from module import x`` and ``alias.x`` of a
    ``from package import module [as alias]``."""
    package, _, leaf = module.rpartition(".")
    aliases, found = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == module:
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == package:
            aliases.update(a.asname or a.name for a in node.names if a.name == leaf)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.add(node.attr)
    return found


def test_a_trials_life_has_one_writer_the_studys_record():
    """Optuna's trial writes are in trials.py, MLflow's trial-run writes in lineage.py, and
    only the study's record calls either (it writes Optuna first, then MLflow)."""
    for name, tree in trees().items():
        if name != TRIALS:
            calls = {
                node.func.attr
                for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            }
            assert calls.isdisjoint(OPTUNA_WRITES), (name, calls & OPTUNA_WRITES)
            reports = [  # ``trial.report``: not Ray's ``tune.report``, not ``trials.report``
                node
                for node in ast.walk(tree)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "report"
                and not (isinstance(node.func.value, ast.Name) and node.func.value.id in RECEIVERS)
            ]
            assert reports == [], f"{name}: an Optuna trial.report outside trials.py"
        if name in (RECORD, TRIALS, LINEAGE):
            continue
        writers = used_from(tree, TRIALS) & TRIAL_WRITERS
        assert writers == set(), f"{name} writes trials ({writers}): the record's job"
        # Other modules may name the tags and where a study's runs are (its parent run).
        allowed = {n for n in used_from(tree, LINEAGE) if n.isupper()} | {"StudyRuns"}
        assert used_from(tree, LINEAGE) <= allowed, (name, used_from(tree, LINEAGE) - allowed)


def test_the_ray_adapters_are_thin():
    """The searcher, callback and stopper hand everything to the record: the module Ray calls
    touches neither Optuna nor MLflow nor their writers itself."""
    tree = trees()["search.run.searcher"]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    banned = [n for n in names if n.split(".")[0] in ("optuna", "mlflow") or n in (TRIALS, LINEAGE)]
    assert banned == []


def test_tag_keys_are_constants_of_one_module_and_attribute_keys_are_never_literals():
    """Every ``cephtune.*`` MLflow tag key is one module-level constant, in one module; Optuna
    attribute keys are read and written through constants (trials.py's, next to their writer)."""
    where: dict[str, set[str]] = {}
    for name, tree in trees().items():
        constants = {
            id(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.startswith("cephtune."):
                    where.setdefault(node.value, set()).add(name)
                    assert id(node) in constants, f"{name}: {node.value!r} is not a constant"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                attribute = node.func.attr == "set_user_attr" or (
                    node.func.attr == "get"
                    and isinstance(node.func.value, ast.Attribute)
                    and node.func.value.attr == "user_attrs"
                )
                key = node.args[0] if node.args else None
                literal = isinstance(key, ast.Constant)
                assert not (attribute and literal), f"{name}: attribute key {key.value!r}"
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
                literal = isinstance(node.slice, ast.Constant)
                assert not (node.value.attr == "user_attrs" and literal), name
    assert {key: names for key, names in where.items() if len(names) > 1} == {}
