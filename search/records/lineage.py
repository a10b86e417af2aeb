"""The MLflow side of a study's record: one parent run per study, one nested run per trial
(``mlflow.parentRunId``) with the trial's resolved config as params and as an artifact, metrics
per epoch with ``step = epoch``, and tags linking it to its Optuna trial and its final state.
The parent run keeps the best-so-far metric and trial number up to date.

These are the writes; when they happen, and that Optuna is written first, is
``search.records.study_record`` (the only module that calls them, but for ``StudyRuns.begin``,
the parent run a new study starts with). The driver is the one writer (fine for sqlite). The tag
keys below are the names others read the runs by (the summary, promote, the tests).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from optuna.trial import TrialState

from search.layout import mask_url
from search.records import ranking
from search.records.tracking import Tracking, resolved_tags
from search.records.trials import FAIL_REASON, STATE_TAGS

# Tags of a study's parent run.
TAG_ROLE = "cephtune.role"  # "study" here; promote's runs and re-checks have their own roles
TAG_STUDY = "cephtune.study"  # also on every trial run
TAG_STORAGE = "cephtune.storage"  # masked
TAG_SPEC_FILE = "cephtune.spec_file"
TAG_FINISHED_TRIALS = "cephtune.finished_trials"
TAG_BEST_TRIAL = "cephtune.best_trial"
ROLE_STUDY = "study"
# Tags of a trial's run.
TAG_RAY_TRIAL = "cephtune.ray_trial_id"
TAG_OPTUNA_TRIAL = "cephtune.optuna_trial"  # the trial's number
TAG_STATE = "cephtune.state"  # "running", then STATE_TAGS of its Optuna state
TAG_FAIL_REASON = "cephtune.fail_reason"
TAG_NODE_IP = "cephtune.node_ip"
TAG_HOSTNAME = "cephtune.hostname"
TAG_WORKER_PID = "cephtune.worker_pid"
RUNNING = "running"


@dataclass(frozen=True)
class StudyRuns:
    """Where a study's MLflow runs are: the store, the study's experiment and its parent run."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    @classmethod
    def begin(
        cls,
        track: Tracking,
        experiment_id: str,
        study_name: str,
        storage_url: str,
        spec_file: str,
        fixed: dict[str, Any],
    ) -> StudyRuns:
        """A new study's parent run: tags name the study, storage and spec; params the fixed
        settings."""
        client = track.client
        run = client.create_run(
            experiment_id,
            run_name=study_name,
            tags={
                TAG_STUDY: study_name,
                TAG_STORAGE: mask_url(storage_url),
                TAG_SPEC_FILE: spec_file,
                TAG_ROLE: ROLE_STUDY,
            },
        )
        params = [Param(k, str(v)[:6000]) for k, v in sorted(fixed.items())]
        client.log_batch(run.info.run_id, params=params)
        return cls(track.uri, experiment_id, run.info.run_id)


def trial_run(
    client: MlflowClient,
    runs: StudyRuns,
    study_name: str,
    number: int,
    ray_trial_id: str,
    config: dict[str, Any],
) -> str:
    """The run of Optuna trial ``number``, with its config as params and ``config.json``. A run
    a driver created but stopped before linking to the trial (its storage went away, or it was
    killed, in between) is found again: the restored trial goes on in it rather than in a second
    one, and gets its params again (the same values are a no-op)."""
    found = client.search_runs(
        [runs.experiment_id],
        f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{runs.parent_run_id}'"
        f" and tags.`{TAG_OPTUNA_TRIAL}` = '{number}'",
        max_results=1,
    )
    if found:
        run_id = found[0].info.run_id
    else:
        tags = {
            MLFLOW_PARENT_RUN_ID: runs.parent_run_id,
            TAG_STUDY: study_name,
            TAG_RAY_TRIAL: ray_trial_id,
            TAG_OPTUNA_TRIAL: str(number),
            TAG_STATE: RUNNING,
        }
        run = client.create_run(runs.experiment_id, run_name=f"trial-{number}", tags=tags)
        run_id = run.info.run_id
    params = [Param(k, str(v)[:6000]) for k, v in sorted(config.items())]
    client.log_batch(run_id, params=params)
    client.log_text(run_id, json.dumps(config, indent=1, sort_keys=True), "config.json")
    return run_id


def logged_epoch(client: MlflowClient, run_id: str, metric: str) -> int:
    """The last epoch the run holds of ``metric`` (0 for none)."""
    return max((m.step for m in client.get_metric_history(run_id, metric)), default=0)


def log_epoch(client: MlflowClient, run_id: str, step: int, values: Mapping[str, Any]) -> None:
    """An epoch's numbers as metrics at ``step``; the resolved precision and device as tags."""
    stamp = int(time.time() * 1000)
    metrics = [
        Metric(k, float(v), stamp, step)
        for k, v in sorted(values.items())
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    client.log_batch(run_id, metrics=metrics, tags=resolved_tags(values))


def log_node(client: MlflowClient, run_id: str, ip: str, hostname: str, pid: int) -> None:
    tags = [(TAG_NODE_IP, ip), (TAG_HOSTNAME, hostname), (TAG_WORKER_PID, str(pid))]
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags])


def close_run(client: MlflowClient, run_id: str, frozen: optuna.trial.FrozenTrial) -> None:
    """Tag a trial's run with its Optuna state (and reason) and end it accordingly."""
    state = STATE_TAGS.get(frozen.state, frozen.state.name.lower())
    tags = [RunTag(TAG_STATE, state)]
    if FAIL_REASON in frozen.user_attrs:
        reason = str(frozen.user_attrs[FAIL_REASON])[:5000]
        tags.append(RunTag(TAG_FAIL_REASON, reason))
    client.log_batch(run_id, tags=tags)
    client.set_terminated(run_id, "FAILED" if frozen.state == TrialState.FAIL else "FINISHED")


def update_parent(client: MlflowClient, runs: StudyRuns, study: optuna.Study, metric: str) -> None:
    """Best-so-far value and trial number of the study on its parent run."""
    finished = study.get_trials(deepcopy=False, states=tuple(STATE_TAGS))
    tags = [RunTag(TAG_FINISHED_TRIALS, str(len(finished)))]
    metrics = []
    best = ranking.ranked(study)[:1]
    if best:
        tags.append(RunTag(TAG_BEST_TRIAL, str(best[0].number)))
        stamp = int(time.time() * 1000)
        metrics.append(Metric(f"best_{metric}", best[0].value, stamp, len(finished)))
    client.log_batch(runs.parent_run_id, metrics=metrics, tags=tags)


def end_parent(client: MlflowClient, runs: StudyRuns) -> None:
    client.set_terminated(runs.parent_run_id)


def sync_runs(client: MlflowClient, experiment_id: str, study: optuna.Study) -> int:
    """Close trial runs still RUNNING whose Optuna trial has ended; returns how many.

    A driver killed between telling Optuna and ending the MLflow run leaves such a run behind;
    the storage is the truth, so the run takes the trial's state.
    """
    trials = study.get_trials(deepcopy=False)
    closed = 0
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
        number = run.data.tags.get(TAG_OPTUNA_TRIAL)
        if number is None or not number.isdigit() or int(number) >= len(trials):
            continue
        trial = trials[int(number)]
        if trial.state in STATE_TAGS:
            close_run(client, run.info.run_id, trial)
            closed += 1
    return closed
