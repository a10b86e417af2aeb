"""Injected faults beside a running trial: a crash must cost nothing that already finished.

Every test runs a real study (Ray Tune, Optuna sqlite storage, MLflow sqlite store) on tiny
synthetic data and breaks something while it runs: a trial's worker process (SIGKILL), the
preprocessing cache (deleted), the Optuna storage (locked by another writer). The driver's own
faults are in ``test_driver_faults.py``; trials that raise or whose loss goes NaN in
``test_study_semantics.py::test_raising_and_nan_trials_fail_with_reasons_and_the_study_goes_on``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import time

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.records.trials import FAIL_REASON, MLFLOW_RUN_ID, RAY_TRIAL_ID
from tests.helpers import (
    TINY_SPACE,
    mlflow_url,
    tiny_study,
    trial_runs,
)
from tests.search.run.faults import (
    assert_consistent,
    query,
    reported,
    restarts,
    start_while,
    wait_for,
    worker_pid,
)

pytestmark = pytest.mark.study


def test_a_killed_worker_fails_its_trial_unless_a_retry_is_configured(project, ray_cluster):
    space = TINY_SPACE + "  checkpoint_every: 1\n"
    study_file = tiny_study(project, "workers", 2, max_epochs=4, grace=4, concurrent=1, space=space)
    study_file.write_text(study_file.read_text() + "max_failures: 1\n")
    db = project / "studies" / "optuna.db"
    killed: list[int] = []

    def kill_after_a_report(number: int) -> None:
        # The worker a trial reported from is the pid its record keeps; a retry's is new.
        wait_for(lambda: worker_pid(db, number) not in (0, *killed), f"trial {number}'s report")
        killed.append(worker_pid(db, number))
        os.kill(killed[-1], signal.SIGKILL)  # as the OS's out-of-memory killer would

    def sabotage() -> None:
        kill_after_a_report(0)  # retried: goes on from its checkpoint
        kill_after_a_report(1)
        kill_after_a_report(1)  # its retry, once it has reported: the one retry is spent, FAIL

    start_while(sabotage, study_file)
    study = assert_consistent(project, "workers", 2)
    first, second = study.trials
    assert first.state == TrialState.COMPLETE
    assert sorted(first.intermediate_values) == [1, 2, 3, 4]
    assert second.state == TrialState.FAIL
    assert second.user_attrs[FAIL_REASON].startswith("worker_died")
    client = MlflowClient(mlflow_url(project))
    run = {r.data.tags["cephtune.optuna_trial"]: r for r in trial_runs(project, "workers")}["0"]
    history = [m.step for m in client.get_metric_history(run.info.run_id, "mre_mm")]
    assert history == [1, 2, 3, 4]  # no epoch logged twice
    # The retry went on from the checkpoint of an epoch trial 0 had reported, not from scratch.
    again = restarts(project, "workers", 0)
    assert len(again) == 2 and again[1] >= 2, again


def test_cache_folder_deleted_between_trials_is_rebuilt(project, ray_cluster, monkeypatch):
    cache = project / "cache"
    monkeypatch.setenv("CEPHTUNE_CACHE_DIR", str(cache))
    study_file = tiny_study(project, "cache", num_samples=2, max_epochs=3, grace=3, concurrent=1)
    db = project / "studies" / "optuna.db"

    def clear_cache() -> None:
        # Trial 0 holds its arrays open once it has validated; trial 1 has not started.
        wait_for(lambda: reported(db, 0) >= 1, "trial 0's first epoch")
        assert query(db, "SELECT COUNT(*) FROM trials") == 1, "trial 1 started too early"
        shutil.rmtree(cache)

    start_while(clear_cache, study_file)
    study = assert_consistent(project, "cache", 2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert len(list((cache / "synthetic").iterdir())) == 1  # the dataset, generated again
    assert list((cache / "preprocessed").glob("*.npy"))  # and its preprocessed images
    assert not list(cache.rglob("*.tmp"))


def test_storage_locked_by_another_writer_is_waited_for(project, ray_cluster):
    study_file = tiny_study(project, "locked", num_samples=2, max_epochs=3, grace=3, concurrent=1)
    db = project / "studies" / "optuna.db"
    held: dict[str, float] = {}

    def hold_lock() -> None:
        wait_for(lambda: reported(db, 0) >= 1, "trial 0's first epoch")
        with sqlite3.connect(db, timeout=30, isolation_level=None) as con:
            con.execute("BEGIN EXCLUSIVE")  # another writer: nobody reads or writes meanwhile
            held["from"] = time.time()
            time.sleep(12)  # past sqlite's default 5 s busy timeout, and a tiny epoch or more
            held["to"] = time.time()
            con.execute("COMMIT")

    start_while(hold_lock, study_file)
    study = assert_consistent(project, "locked", 2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in study.trials)
    # The lock held a write back: an epoch a worker reported at least a second before it was
    # released (Ray's own timestamp, in whole seconds) reached the stores only after that.
    client = MlflowClient(mlflow_url(project))
    waited = []
    for trial in study.trials:
        (folder,) = (project / "studies" / "locked").glob(f"*/*{trial.user_attrs[RAY_TRIAL_ID]}*")
        reports = map(json.loads, (folder / "result.json").read_text().splitlines())
        at = {r["training_iteration"]: r["timestamp"] for r in reports}
        history = client.get_metric_history(trial.user_attrs[MLFLOW_RUN_ID], "mre_mm")
        waited += [
            (trial.number, m.step)
            for m in history
            if at[m.step] + 1 <= held["to"] - 1 and m.timestamp / 1000 >= held["to"]
        ]
    assert waited, held
