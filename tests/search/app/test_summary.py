"""What a finished study prints, read back from its records."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search.app.summary import summary
from search.layout import Layout
from search.records import trials
from search.run.lifecycle import Outcome
from search.studyfiles.study import load_study
from tests.helpers import optuna_url, tiny_study


def test_a_finished_study_whose_trials_were_all_pruned_is_not_an_error(project, capsys):
    spec = load_study(tiny_study(project, num_samples=1, max_epochs=3))
    (project / "studies").mkdir()
    study = optuna.create_study(study_name=spec.name, storage=optuna_url(project))
    trial = study.ask()
    trial.report(9.0, 1)
    study.tell(trial, state=TrialState.PRUNED)
    outcome = Outcome(spec, Layout.here(), complete=True)
    assert summary(outcome) == 0
    out = capsys.readouterr().out
    assert "pruned 1" in out and "No trial ran all 3 epochs" in out
    assert "Early stopping: rungs at 2 epochs after warmup, 1 trials stopped." in out


def test_with_a_tracking_server_the_summary_points_at_its_page(project, capsys, monkeypatch):
    spec = load_study(tiny_study(project, num_samples=1, max_epochs=1, grace=1))
    (project / "studies").mkdir()
    study = optuna.create_study(study_name=spec.name, storage=optuna_url(project))
    study.tell(study.ask(), 3.0)
    study.set_user_attr(trials.BASELINE, 7.5)  # what start records
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:s3cret@mlflow-host:5000")
    outcome = Outcome(spec, Layout.here(), complete=True)
    assert summary(outcome) == 0
    out = capsys.readouterr().out
    assert "MLflow UI:        http://user:***@mlflow-host:5000 (the MLflow tracking server)" in out
    assert "mlflow ui" not in out and "s3cret" not in out
    assert "Best trial #0: mre_mm = 3.000 mm" in out
    assert "valid split): 7.500 mm -> best is 2.50x lower" in out
    # a first rung at the last epoch: ASHA can stop nothing, and the summary says why
    assert "Early stopping: no rung before the last epoch (max_epochs 1), 0 trials stopped." in out


def test_a_best_trial_no_better_than_the_mean_shape_is_said_to_have_learned_nothing():
    assert trials.against_baseline(3.0, 7.5) == "2.50x lower"
    for value in (7.5, 48.0):  # a tiny run that learned nothing yet: never "0.16x lower"
        assert trials.against_baseline(value, 7.5).startswith("no lower than the baseline")
