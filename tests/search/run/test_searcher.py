"""The searcher keeps Optuna true when Ray restores trials its saved state never saw."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search.records import trials
from search.records.trials import RAY_TRIAL_ID
from search.run.searcher import StudySearch


def searcher(storage: optuna.storages.RDBStorage, num_samples: int = 10) -> StudySearch:
    search = StudySearch(
        space=lambda trial: {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True)},
        metric="mre_mm",
        mode="min",
        sampler=optuna.samplers.RandomSampler(seed=0),
        study_name="restored",
        storage=storage,
        max_t=2,
        num_samples=num_samples,
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


def test_the_storage_not_rays_counter_decides_how_many_trials_are_left(tmp_path):
    """A killed driver's Ray experiment can predate trials that finished in Optuna: the
    restored searcher counts the storage, so the study does not run them again."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    before_crash = searcher(storage, num_samples=4)
    for ray_id in ("ray-1", "ray-2", "ray-3"):
        assert before_crash.suggest(ray_id) is not None
    before_crash.on_trial_complete("ray-1", {"mre_mm": 3.0, "training_iteration": 2})
    before_crash.on_trial_complete("ray-2", {"mre_mm": 4.0, "training_iteration": 1})
    ot_study = optuna.load_study(study_name="restored", storage=storage)
    (gone,) = trials.interrupt(ot_study)  # ray-3 was running when the driver died
    assert gone.user_attrs[RAY_TRIAL_ID] == "ray-3"

    restored = searcher(storage, num_samples=4)  # Ray's saved state knew none of them
    assert restored.suggest("ray-4") is not None  # 2 finished + 1 running: one more
    assert restored.suggest("ray-5") is not None
    assert restored.suggest("ray-6") == "FINISHED"  # 2 finished + 2 running = 4
    restored.on_trial_complete("ray-4", {"mre_mm": 2.0, "training_iteration": 2})
    assert restored.suggest("ray-7") == "FINISHED"


def test_a_restored_trial_optuna_already_closed_is_stopped(tmp_path):
    """Ray's saved experiment can list a trial as running that finished in Optuna before the
    driver died: it must not train again (the stopper Ray restores with the experiment)."""
    import pickle

    from search.records.study_record import StudyRecord
    from search.run.searcher import SkipClosedTrials

    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="restored", storage=url)
    for ray_id, state in (("done", TrialState.COMPLETE), ("open", TrialState.RUNNING)):
        trial = study.ask()
        trial.set_user_attr(RAY_TRIAL_ID, ray_id)
        if state == TrialState.COMPLETE:
            study.tell(trial, 1.0)
    record = StudyRecord("restored", url, "mre_mm", max_t=2)
    stopper = pickle.loads(pickle.dumps(SkipClosedTrials(record)))
    assert stopper("done", {}) is True
    assert stopper("open", {}) is False
    assert stopper.stop_all() is False
