"""The harness of the hostile-input cases (issue 7): each case is one ``search.cli.main`` call
that must print exactly one ``error:`` line on stderr naming the file (and the key or line) and
the rule, exit with code 2, show no traceback, and leave no trace.

The project folder starts as another study left it: an Optuna storage with three studies and an
MLflow store with one experiment and run (``build_template``, once per session, copied per
case). Afterwards every row of both sqlite files must be unchanged (read with sqlite3: opening
a store per case through Optuna or MLflow would cost about a second each), no file may appear
in the project folder or outside it, and nothing in the cache folder. The cases live with the
package whose rules they test: ``tests/search/studyfiles/test_bad_study_files.py``,
``tests/search/studyfiles/test_bad_space_files.py``,
``tests/trainables/data/test_bad_datasets.py``, ``tests/search/app/test_bad_commands.py``;
what they write is built with ``tests/bad_builds.py`` (damaged images: ``tests/bad_images.py``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.cli import main
from tests.helpers import REPO, TINY_TRAINABLE, mlflow_url, optuna_url, write
from trainables.data.synth import SynthSpec, write_dataset

OPTUNA_DB = Path("studies/optuna.db")
MLFLOW_DB = Path("mlruns/mlflow.db")
PWNED = "PWNED"  # what a YAML ``!!python/object/apply:os.system`` tag would create


@dataclass(frozen=True)
class Ctx:
    """Where a case builds its input: the project folder (the current directory) and the
    pristine datasets, which a case copies before it corrupts them."""

    project: Path
    aariz: Path
    isbi: Path

    def data(self, fmt: str = "aariz") -> Path:
        """A private copy of a pristine dataset inside the project folder."""
        return Path(
            shutil.copytree(self.aariz if fmt == "aariz" else self.isbi, self.project / fmt)
        )


Build = Callable[[Ctx], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    build: Build  # writes the bad input under ctx.project, returns the argv
    expect: tuple[str, ...]  # substrings of the one error line: file, key or line, rule
    ray: bool = False  # needs the session's Ray (the check runs after Ray is joined)
    generates: bool = False  # synthetic data is generated before the failure: cache may hold it


# --- the fixtures: a project folder with unrelated records, pristine datasets ----------------


def write_isbi(root: Path) -> Path:
    """A tiny ISBI 2015 tree: 4 BMPs of 48 x 60 px, senior and junior annotations."""
    for folder, ids in {"TrainingData": (1, 2), "Test1Data": (3,), "Test2Data": (4,)}.items():
        (root / "RawImage" / folder).mkdir(parents=True)
        for n in ids:
            rng = np.random.default_rng(n)
            pixels = rng.integers(0, 255, (60, 48), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "RawImage" / folder / f"{n:03d}.bmp")
            points = np.round(rng.uniform(5, [40, 50], size=(19, 2)))
            for who in ("senior", "junior"):
                lines = [f"{x:g},{y:g}" for x, y in points] + ["3", "1"]
                write(root / "AnnotationsByMD" / f"400_{who}" / f"{n:03d}.txt", "\n".join(lines))
    return root


def make_template(root: Path) -> Path:
    """A project folder as other studies left it. Optuna: ``unrelated`` (not made by cephtune,
    two COMPLETE trials), ``pending`` (one PRUNED, one RUNNING trial: no finished one) and
    ``done`` (one COMPLETE trial on ``./aariz``); MLflow: one experiment with one run."""
    import optuna
    from mlflow.tracking import MlflowClient

    (root / "studies").mkdir(parents=True)
    (root / "mlruns").mkdir()
    storage = optuna_url(root)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        unrelated = optuna.create_study(study_name="unrelated", storage=storage)
        unrelated.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        # What search/tuner.py records and search/results.py, search/promote.py read back.
        pending = optuna.create_study(study_name="pending", storage=storage)
        attrs = {
            "metric": "mre_mm",
            "constants": {"data_dir": str(root / "data"), "epochs": 2},
            "spec": {},
            "study_file": str(root / "gone.yaml"),
            "mlflow_experiment_id": "0",
            "mlflow_parent_run_id": "none",
        }
        for key, value in attrs.items():
            pending.set_user_attr(key, value)
        pruned = pending.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-3)})
        pruned.report(3.5, step=1)
        pending.tell(pruned, state=optuna.trial.TrialState.PRUNED)
        pending.ask()  # still RUNNING
        # A finished study whose constants name the dataset relative to the project folder, so
        # that each case can give it its own (corrupted) copy.
        done = optuna.create_study(study_name="done", storage=storage)
        done.set_user_attr("metric", "mre_mm")
        done.set_user_attr("constants", {**TINY_TRAINABLE, "data_dir": "aariz", "epochs": 2})
        done.add_trial(
            optuna.trial.create_trial(
                params={"lr": 1e-3},
                distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)},
                value=3.0,
            )
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    client = MlflowClient(mlflow_url(root))
    experiment = client.create_experiment(
        "unrelated", artifact_location=(root / "mlruns" / "artifacts").as_uri()
    )
    run = client.create_run(experiment, run_name="unrelated")
    client.log_metric(run.info.run_id, "mre_mm", 2.5)
    client.set_terminated(run.info.run_id)
    return root


def rows(db: Path) -> list[str]:
    """Every row of every table, as SQL: equal before and after means no record changed."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        return list(con.iterdump())


def build_template(tmp_path_factory) -> dict:
    root = make_template(tmp_path_factory.mktemp("template") / "project")
    found = {"root": root, "optuna": rows(root / OPTUNA_DB), "mlflow": rows(root / MLFLOW_DB)}
    for store in ("optuna", "mlflow"):  # the comparison is not vacuous
        assert sum("INSERT" in row and "unrelated" in row for row in found[store]) >= 1
    return found


def build_pristine(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("datasets")
    aariz = write_dataset(SynthSpec(n=6, width=80, height=100, seed=0), root / "aariz")
    return {"aariz": aariz, "isbi": write_isbi(root / "isbi")}


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def check_no_trace(case: Case, template: dict, tmp: Path, project: Path, before: set[str]):
    """The records, the project folder and the cache are as they were before the command."""
    assert rows(project / OPTUNA_DB) == template["optuna"], "the Optuna storage changed"
    assert rows(project / MLFLOW_DB) == template["mlflow"], "the MLflow store changed"
    assert files(project) - before == set()
    assert not (project / PWNED).exists()
    assert sorted(p.name for p in tmp.iterdir()) == ["cache", "project"], "wrote outside"
    cached = files(tmp / "cache")
    if case.generates:  # a complete synthetic dataset, which later studies reuse, and no more
        assert cached and all(name.startswith("synthetic/v") for name in cached)
        assert not any(part.startswith(".") for name in cached for part in Path(name).parts)
    else:
        assert cached == set()


def setup_case(case: Case, tmp: Path, template: dict, pristine: dict) -> tuple[Path, list[str]]:
    project = Path(shutil.copytree(template["root"], tmp / "project"))
    (tmp / "cache").mkdir()
    os.chdir(project)
    return project, case.build(Ctx(project, pristine["aariz"], pristine["isbi"]))


def check_one_line(err: str, case: Case) -> None:
    assert "Traceback" not in err
    assert "s3cret" not in err  # a storage password is masked in every message
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert err.startswith("error: ")
    for part in case.expect:
        assert part in err, f"{part!r} missing from {err!r}"


def params_of(cases: list[Case]) -> list:
    return [pytest.param(c, id=c.id) for c in cases]


def run_in_process(case: Case, tmp: Path, template: dict, pristine: dict, capsys) -> None:
    """The case through ``search.cli.main`` in this process: one line, exit 2, no trace."""
    project, args = setup_case(case, tmp, template, pristine)
    before = files(project)
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, err
    check_one_line(err, case)
    assert out == ""
    check_no_trace(case, template, tmp, project, before)


def run_as_process(case: Case, tmp: Path, template: dict, pristine: dict) -> None:
    """The case as a real ``search.py`` process: its libraries' notices must not reach stderr
    either (Ray's, Optuna's, MLflow's)."""
    project, args = setup_case(case, tmp, template, pristine)
    before = files(project)
    env = {"PATH": os.environ["PATH"], "CEPHTUNE_CACHE_DIR": str(tmp / "cache")}
    env.update({k: os.environ[k] for k in ("HF_HUB_OFFLINE", "HF_HOME")})  # conftest's: no download
    result = subprocess.run(
        [sys.executable, str(REPO / "search.py"), *args],
        cwd=project, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    check_one_line(result.stderr, case)
    assert result.stdout == ""
    check_no_trace(case, template, tmp, project, before)


def case_tests(cases: list[Case], as_process: tuple[str, ...] = ()):
    """The two tests a module of cases runs: every case in this process, and the cases named
    in ``as_process`` also as a real process. Assign them to ``test_…`` names in the module."""

    @pytest.mark.parametrize("case", params_of(cases))
    def in_process(case, isolated, bad_input_template, pristine_datasets, request, capsys):
        if case.ray:
            request.getfixturevalue("ray_cluster")
        run_in_process(case, isolated, bad_input_template, pristine_datasets, capsys)

    chosen = [c for c in cases if c.id in as_process]
    assert len(chosen) == len(as_process), "a process case names no case"

    @pytest.mark.parametrize("case", params_of(chosen))
    def real_process(case, isolated, bad_input_template, pristine_datasets):
        run_as_process(case, isolated, bad_input_template, pristine_datasets)

    return in_process, real_process
