"""A study's record owns a trial's life: Optuna first, then MLflow, each epoch once to each,
whichever of Ray's adapters tells it first, and truthful terminal states in both stores."""

from __future__ import annotations

import math
import pickle

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.records.lineage import (
    TAG_BEST_TRIAL,
    TAG_FAIL_REASON,
    TAG_NODE_IP,
    TAG_OPTUNA_TRIAL,
    TAG_STATE,
    StudyRuns,
)
from search.records.study_record import Epoch, StudyRecord
from search.records.trials import FAIL_REASON, INTERRUPTED, MLFLOW_RUN_ID, NODE_IP

NODE = ("10.0.0.1", "h1", 4242)


@pytest.fixture
def stores(tmp_path) -> tuple[str, StudyRuns]:
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="s", storage=url)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("s", artifact_location=(tmp_path / "a").as_uri())
    return url, StudyRuns(uri, experiment, client.create_run(experiment).info.run_id)


def epoch(step: int, value: float) -> Epoch:
    return Epoch(step, {"mre_mm": value, "training_iteration": step, "device": "cpu"}, NODE)


def started(record: StudyRecord, ray_id: str) -> optuna.trial.FrozenTrial:
    record.add_trial(ray_id, record.study.ask())
    record.start_trial(ray_id, {"lr": 0.1})
    return record.study.trials[-1]


def history(record: StudyRecord, number: int) -> list[int]:
    run_id = record.study.trials[number].user_attrs[MLFLOW_RUN_ID]
    return [m.step for m in record.client.get_metric_history(run_id, "mre_mm")]


def run_of(record: StudyRecord, number: int):
    return record.client.get_run(record.study.trials[number].user_attrs[MLFLOW_RUN_ID])


def test_each_epoch_reaches_each_store_once_whoever_tells_it(stores):
    url, runs = stores
    record = StudyRecord("s", url, "mre_mm", max_t=3, runs=runs)
    started(record, "ray-1")
    for step in (1, 2):
        record.report_epoch("ray-1", epoch(step, 5.0 - step))  # the searcher tells first,
        record.report_epoch("ray-1", epoch(step, 5.0 - step))  # then the callbacks
    record.report_epoch("ray-1", epoch(1, 9.0))  # a retry re-runs an epoch: the first counts
    record.end_trial("ray-1", epoch(3, 1.5))  # the result that led to the stop, first seen here
    record.end_trial("ray-1", epoch(3, 1.5))  # and told again by the other adapter
    (trial,) = record.study.trials
    assert trial.state == TrialState.COMPLETE and trial.value == 1.5
    assert trial.intermediate_values == {1: 4.0, 2: 3.0, 3: 1.5}
    assert trial.user_attrs[NODE_IP] == NODE[0]
    assert history(record, 0) == [1, 2, 3]
    run = run_of(record, 0)
    assert run.info.status == "FINISHED"
    assert run.data.tags[TAG_STATE] == "completed" and run.data.tags[TAG_NODE_IP] == NODE[0]
    assert run.data.tags[TAG_OPTUNA_TRIAL] == "0" and run.data.tags["cephtune.device"] == "cpu"
    parent = record.client.get_run(runs.parent_run_id)
    assert parent.data.tags[TAG_BEST_TRIAL] == "0"


def test_a_record_rebuilt_after_the_driver_died_reads_what_the_stores_hold(stores):
    url, runs = stores
    before = StudyRecord("s", url, "mre_mm", max_t=3, runs=runs)
    assert pickle.loads(pickle.dumps(before)) is before  # the adapters share this process's
    started(before, "ray-1")
    for step in (1, 2):
        before.report_epoch("ray-1", epoch(step, 5.0 - step))
    after = StudyRecord("s", url, "mre_mm", max_t=3, runs=runs)  # a new driver: nothing cached
    assert pickle.loads(pickle.dumps(before)) is after
    after.start_trial("ray-1", {"lr": 0.1})  # found by its Ray id, in the run it had
    for step in (2, 3):  # the trial goes on from its checkpoint at epoch 1
        after.report_epoch("ray-1", epoch(step, 5.0 - step))
    after.end_trial("ray-1")
    (trial,) = after.study.trials
    assert trial.state == TrialState.COMPLETE and trial.intermediate_values == {1: 4, 2: 3, 3: 2}
    assert history(after, 0) == [1, 2, 3]
    assert len(after.client.search_runs([runs.experiment_id])) == 2  # the parent and one run


def test_stopped_failed_and_interrupted_trials_say_so_in_both_stores(stores):
    url, runs = stores
    record = StudyRecord("s", url, "mre_mm", max_t=3, runs=runs)
    for ray_id in ("stopped", "raised", "nan", "silent", "running"):
        started(record, ray_id)
    record.report_epoch("stopped", epoch(1, 4.0))
    record.end_trial("stopped")  # ASHA stopped it after epoch 1
    record.report_epoch("raised", epoch(1, 4.0))
    record.end_trial("raised", error="nan_loss: non-finite training loss")
    record.end_trial("nan", epoch(3, math.nan))
    record.end_trial("silent")
    record.interrupt()  # the driver stopped: "running" is left RUNNING
    stopped, raised, nan, silent, running = record.study.trials
    assert stopped.state == TrialState.PRUNED and stopped.value == 4.0
    assert raised.user_attrs[FAIL_REASON] == "nan_loss: non-finite training loss"
    assert nan.user_attrs[FAIL_REASON] == "non_finite_metric: mre_mm = nan"
    assert silent.user_attrs[FAIL_REASON].startswith("no_result")
    assert running.user_attrs[FAIL_REASON] == INTERRUPTED
    assert [t.state for t in (raised, nan, silent, running)] == [TrialState.FAIL] * 4
    assert run_of(record, 0).data.tags[TAG_STATE] == "pruned"
    for number, trial in enumerate((raised, nan, silent, running), start=1):
        run = run_of(record, number)
        assert run.info.status == "FAILED" and run.data.tags[TAG_STATE] == "failed"
        assert run.data.tags[TAG_FAIL_REASON] == trial.user_attrs[FAIL_REASON]
    assert record.taken() == 4  # the interrupted trial is replaced, not counted
