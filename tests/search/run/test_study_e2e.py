"""End to end through the CLI with real Ray, Optuna and MLflow on a tiny synthetic set."""

from __future__ import annotations

import json
import re

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from search.cli import main
from tests.helpers import mlflow_url, optuna_url, tiny_study

pytestmark = pytest.mark.study


def runs_of(client, experiment_id):
    """The study's parent run and its nested trial runs (which must all point at it)."""
    runs = client.search_runs([experiment_id])
    parents = [r for r in runs if r.data.tags.get("cephtune.role") == "study"]
    assert len(parents) == 1
    children = [r for r in runs if r is not parents[0]]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    return parents[0], children


def test_start_records_every_trial_in_optuna_and_mlflow(project, ray_cluster, capsys):
    study_file = tiny_study(project, name="e2e", num_samples=4, max_epochs=2, grace=2)

    assert main(["start", str(study_file)]) == 0
    printed = capsys.readouterr().out
    assert "Best trial #" in printed and "Mean-shape baseline" in printed
    assert "optuna-dashboard" in printed and "ui --backend-store-uri" in printed

    storage = optuna_url(project)
    study = optuna.load_study(study_name="e2e", storage=storage)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4 == len(study.trials)
    assert all(t.value is not None and t.value > 0 for t in trials)
    assert {"lr", "loss"} <= set(trials[0].params)

    assert study.user_attrs["spec"]["name"] == "e2e"
    baseline = study.user_attrs["mean_shape_mre_mm"]  # start records what a model must beat
    assert baseline > 0 and f"split): {baseline:.3f} mm -> best is" in printed
    client = MlflowClient(mlflow_url(project))
    experiment = client.get_experiment_by_name("e2e")
    assert experiment.artifact_location.startswith((project / "mlruns").as_uri())
    parent, runs = runs_of(client, experiment.experiment_id)
    assert len(runs) == 4
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "mre_mm")
        assert [m.step for m in history] == [1, 2]
        assert run.data.params["image_size"] == "64"
        assert "lr" in run.data.params and "loss" in run.data.params
        assert run.data.tags["cephtune.state"] == "completed"
        assert run.data.tags["cephtune.precision"] == "fp32"  # what `auto` became
        assert run.data.tags["cephtune.device"] == "cpu"
        trial = study.trials[int(run.data.tags["cephtune.optuna_trial"])]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert trial.user_attrs["ray_trial_id"] == run.data.tags["cephtune.ray_trial_id"]
    assert parent.data.tags["cephtune.best_trial"] == str(study.best_trial.number)
    assert parent.data.metrics["best_mre_mm"] == pytest.approx(study.best_value)
    assert parent.info.status == "FINISHED"

    assert main(["best", "e2e", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["study"] == "e2e"
    assert best["trial"] == study.best_trial.number
    assert best["mre_mm"] == pytest.approx(study.best_value)
    assert best["config"]["lr"] == study.best_trial.params["lr"]
    assert best["config"]["backbone"] == "hrnet_w18_small"

    # The best trial as a training config that `train` takes as it is: it trains the trial again.
    assert main(["best", "e2e", "--yaml"]) == 0
    (project / "best.yaml").write_text(capsys.readouterr().out)
    values = yaml.safe_load((project / "best.yaml").read_text())
    assert values == {**best["config"], "best_metric": "mre_mm", "best_mode": "min"}
    assert main(["train", "best.yaml"]) == 0
    trained = re.search(r"best valid MRE (\d+\.\d+) mm", capsys.readouterr().out)
    # Same seed and data: the same valid MRE (seen equal to 3 decimals; the margin is for the
    # thread count, which differs between a Ray worker and this process).
    assert float(trained[1]) == pytest.approx(best["mre_mm"], rel=1e-3)

    assert main(["status", "e2e", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["states"] == {"COMPLETE": 4}
    assert status["best"]["trial"] == best["trial"]


def test_second_start_refuses_and_fresh_starts_over(project, ray_cluster, capsys):
    study_file = tiny_study(project, name="again", num_samples=2, max_epochs=1, grace=1)
    experiments = project / "shared" / "again"  # experiment_path/NAME
    study_file.write_text(study_file.read_text() + f"experiment_path: {experiments.parent}\n")
    assert main(["start", str(study_file)]) == 0
    capsys.readouterr()
    first = {p.name for p in experiments.glob("ray/trial_*")}
    assert len(first) == 2

    assert main(["start", str(study_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and "--fresh" in err and "\n" not in err
    storage = optuna_url(project)
    assert len(optuna.load_study(study_name="again", storage=storage).trials) == 2

    assert main(["start", str(study_file), "--fresh"]) == 0
    assert len(optuna.load_study(study_name="again", storage=storage).trials) == 2
    trials = {p.name for p in experiments.glob("ray/trial_*")}  # the old experiment deleted
    assert len(trials) == 2 and trials.isdisjoint(first)
    client = MlflowClient(mlflow_url(project))
    experiment = client.get_experiment_by_name("again")
    assert len(runs_of(client, experiment.experiment_id)[1]) == 2


def test_resume_with_more_samples_adds_trials_to_a_finished_study(project, ray_cluster, capsys):
    """Optuna's "run more": ``resume NAME --num-samples N`` on a finished study runs the new
    trials in the same study and MLflow parent, and its budget holds for a later resume."""
    study_file = tiny_study(project, name="more", num_samples=2, max_epochs=1, grace=1)
    assert main(["start", str(study_file)]) == 0
    capsys.readouterr()
    assert main(["resume", "more", "--num-samples", "2"]) == 2
    err = capsys.readouterr().err
    assert "already has 2 finished trials" in err and err.count("\n") == 1

    assert main(["resume", "more", "--num-samples", "3"]) == 0
    assert "Study 'more': 3 trials finished" in capsys.readouterr().out
    storage = optuna_url(project)
    study = optuna.load_study(study_name="more", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert study.user_attrs["num_samples"] == 3
    client = MlflowClient(mlflow_url(project))
    _, children = runs_of(client, client.get_experiment_by_name("more").experiment_id)
    assert len(children) == 3
    assert main(["resume", "more"]) == 0  # the raised budget holds; nothing more runs
    assert len(optuna.load_study(study_name="more", storage=storage).trials) == 3

    # Raising num_samples in the file instead is refused with the way to do it.
    study_file.write_text(study_file.read_text().replace("num_samples: 2", "num_samples: 4"))
    capsys.readouterr()
    assert main(["resume", "more"]) == 2
    err = capsys.readouterr().err
    assert "changed since study 'more' started" in err and "--num-samples N" in err
