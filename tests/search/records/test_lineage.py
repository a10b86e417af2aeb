"""MLflow runs follow the Optuna storage, even after a driver died between the two writes."""

from __future__ import annotations

import optuna
from mlflow.tracking import MlflowClient

from search.records.lineage import sync_runs


def test_sync_closes_runs_whose_trial_ended_and_keeps_live_ones(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("s", artifact_location=(tmp_path / "a").as_uri())
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db")
    done, failed, live = study.ask(), study.ask(), study.ask()
    failed.set_user_attr("fail_reason", "nan_loss: boom")
    study.tell(done, 1.5)
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    runs = [
        client.create_run(experiment, tags={"cephtune.optuna_trial": str(t.number)}).info.run_id
        for t in (done, failed, live)
    ]
    assert sync_runs(client, experiment, study) == 2
    got = [client.get_run(r) for r in runs]
    assert [r.info.status for r in got] == ["FINISHED", "FAILED", "RUNNING"]
    assert got[0].data.tags["cephtune.state"] == "completed"
    assert got[1].data.tags["cephtune.fail_reason"] == "nan_loss: boom"
