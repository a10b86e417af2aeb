"""The searcher keeps Optuna true when Ray restores trials its saved state never saw."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search.results import RAY_TRIAL_ID
from search.searcher import StudySearch


def searcher(storage: optuna.storages.RDBStorage) -> StudySearch:
    search = StudySearch(
        space=lambda trial: {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True)},
        metric="mre_mm",
        mode="min",
        sampler=optuna.samplers.RandomSampler(seed=0),
        study_name="restored",
        storage=storage,
        max_t=2,
    )
    search.set_search_properties("mre_mm", "min", {})
    return search


def test_a_trial_the_restored_searcher_never_saw_is_linked_by_its_ray_id(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    before_crash = searcher(storage)
    assert before_crash.suggest("ray-1") is not None  # created, then the driver died
    restored = searcher(storage)  # state saved before ray-1 existed
    assert "ray-1" not in restored._ot_trials
    for epoch in (1, 2):
        restored.on_trial_result("ray-1", {"mre_mm": 5.0 - epoch, "training_iteration": epoch})
    restored.on_trial_complete("ray-1", {"mre_mm": 3.0, "training_iteration": 2})
    (trial,) = optuna.load_study(study_name="restored", storage=storage).trials
    assert trial.user_attrs[RAY_TRIAL_ID] == "ray-1"
    assert trial.state == TrialState.COMPLETE and trial.value == 3.0
    assert trial.intermediate_values == {1: 4.0, 2: 3.0}


def test_a_finished_study_whose_trials_were_all_pruned_is_not_an_error(project, capsys):
    from conftest import tiny_study

    from search import datasets
    from search.study import load_study
    from search.summary import summary

    study = load_study(tiny_study(project, num_samples=1, max_epochs=3))
    (project / "studies").mkdir()
    storage = optuna.storages.RDBStorage(f"sqlite:///{project}/studies/optuna.db")
    ot_study = optuna.create_study(study_name=study.name, storage=storage)
    trial = ot_study.ask()
    trial.report(9.0, 1)
    ot_study.tell(trial, state=TrialState.PRUNED)
    assert summary(study, datasets.prepare(study.dataset), complete=True) == 0
    out = capsys.readouterr().out
    assert "pruned 1" in out and "No trial ran all 3 epochs" in out
