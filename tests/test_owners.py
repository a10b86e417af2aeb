"""One owner per contract, checked on the source (issue 24): the artifact files and the
registered model's metadata in ``trainables.artifacts``; the device for inference in one place;
a trial's life in Optuna and MLflow in the study's record with thin Ray adapters; tag and
attribute keys as constants of one module."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO
from tests.test_architecture import imports, modules


def _literals(path: Path) -> list[str]:
    """The string constants of ``path``, docstrings left out (f-strings give their parts)."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


ARTIFACTS = "trainables.artifacts"


def test_the_artifact_contract_has_one_owner_that_every_side_imports():
    """Checkpoint file names, the ``final/`` files and the registered model's required
    metadata keys are written only in ``trainables.artifacts``; the modules that write or read
    them import it (issue 24)."""
    from trainables.artifacts import BEST_CHECKPOINT, LAST_CHECKPOINT, FinalDir, ModelMetadata

    final = FinalDir(Path("final"))
    names = {BEST_CHECKPOINT, LAST_CHECKPOINT, final.test_metrics.name}
    names |= {p.name for p in final.tables}
    found = modules()
    paths = {**found, "search.py": REPO / "search.py"}
    stray = {
        (name, word)
        for name, path in paths.items()
        if name != ARTIFACTS
        for text in _literals(path)
        for word in names
        if word in text
    }
    assert stray == set(), "file names of the artifact contract outside trainables.artifacts"
    keys = set(ModelMetadata.REQUIRED)
    model_side = [n for n in found if n.startswith(("search.app", "trainables.eval"))]
    indexed = {(n, text) for n in model_side for text in _literals(found[n]) if text in keys}
    assert indexed == set(), "registered-model metadata read by bare keys"
    users = ("search.app.registry", "search.app.promote", "search.app.candidates",
             "search.app.report_final", "search.app.predict", "search.app.train",
             "trainables.eval.serving", "trainables.checkpoint", "trainables.run",
             "trainables.train")  # fmt: skip
    known = set(found)
    assert [u for u in users if ARTIFACTS not in imports(found[u], known)] == []


def test_the_device_for_inference_is_picked_in_one_place():
    """Outside training (``trainables.run``) and a model's own device (``inference``), a
    model runs where ``Precision.for_inference`` says."""
    calls = {name for name, path in modules().items() if "Precision.resolve(" in path.read_text()}
    assert calls <= {"trainables.precision", "trainables.run", "trainables.eval.inference"}


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
