"""MLflow lineage of a study, written by the driver only (one writer: fine for sqlite).

One parent run per study, one nested run per trial (``mlflow.parentRunId``) with the trial's
resolved config as params and as an artifact, metrics per epoch with ``step = epoch``, and tags
linking it to its Optuna trial and its final state. The Optuna storage is the source of truth
for states: the searcher tells Optuna before Ray calls these callbacks, so each run's state tag
is read from there. The parent run keeps the best-so-far metric and trial number up to date.
"""

from __future__ import annotations

import json
import time
from typing import Any

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from ray.tune import Callback

from search.layout import mask_url
from search.records import ranking
from search.records.storage import open_storage
from search.records.tracking import resolved_tags
from search.records.trials import (
    FAIL_REASON,
    MLFLOW_RUN_ID,
    STATE_TAGS,
    attach_run,
    by_ray_id,
    set_node,
)

SKIPPED_RESULT_KEYS = {"trial_id", "date", "hostname", "node_ip", "pid", "done", "config"}


class StudyLineage(Callback):
    """Ray Tune callback: nested MLflow runs for the trials of one study."""

    def __init__(
        self,
        study_name: str,
        storage_url: str,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        metric: str,
    ) -> None:
        self.study_name = study_name
        self.storage_url = storage_url
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.metric = metric
        self._runs: dict[str, str] = {}
        self._logged: dict[str, int] = {}  # last epoch logged per Ray trial
        self._nodes: dict[str, tuple[str, str]] = {}  # (node IP, host name) per Ray trial
        self._client: MlflowClient | None = None
        self._study: optuna.Study | None = None

    def __getstate__(self) -> dict[str, Any]:  # Ray pickles callbacks with the experiment
        # ``_logged`` is read back from the runs instead: the saved experiment can be older
        # than the last epochs logged before a driver died.
        return {**self.__dict__, "_client": None, "_study": None, "_logged": {}}

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            storage = open_storage(self.storage_url)
            self._study = optuna.load_study(study_name=self.study_name, storage=storage)
        return self._study

    def optuna_trial(self, ray_trial_id: str) -> optuna.trial.FrozenTrial | None:
        return by_ray_id(self.study, ray_trial_id)

    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        frozen = self.optuna_trial(trial.trial_id)
        if frozen is None or frozen.state != TrialState.RUNNING:
            return  # a trial Optuna already closed (re-run after a restore): nothing to log
        run_id = frozen.user_attrs.get(MLFLOW_RUN_ID)
        if run_id is None:
            run_id = self._run_of(frozen.number) or self._create_run(frozen.number, trial.trial_id)
            # A run found again gets its params and config again: the same values are a no-op.
            params = [Param(k, str(v)[:6000]) for k, v in sorted(trial.config.items())]
            self.client.log_batch(run_id, params=params)
            self.client.log_text(
                run_id, json.dumps(trial.config, indent=1, sort_keys=True), "config.json"
            )
            attach_run(self.study, frozen, run_id)
        self._runs[trial.trial_id] = run_id

    def _run_of(self, number: int) -> str | None:
        """The run of Optuna trial ``number`` that a driver created but stopped before linking
        it to the trial (its storage went away, or it was killed, in between): the restored
        trial goes on in that run rather than in a second one."""
        found = self.client.search_runs(
            [self.experiment_id],
            f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'"
            f" and tags.`cephtune.optuna_trial` = '{number}'",
            max_results=1,
        )
        return found[0].info.run_id if found else None

    def _create_run(self, number: int, ray_trial_id: str) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{number}",
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                "cephtune.study": self.study_name,
                "cephtune.ray_trial_id": ray_trial_id,
                "cephtune.optuna_trial": str(number),
                "cephtune.state": "running",
            },
        )
        return run.info.run_id

    def on_trial_result(
        self, iteration: int, trials: list, trial, result: dict, **info: Any
    ) -> None:
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            return
        self._note_node(trial.trial_id, run_id, result)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        if trial.trial_id not in self._logged:  # first result this driver sees: what is logged
            history = self.client.get_metric_history(run_id, self.metric)
            self._logged[trial.trial_id] = max((m.step for m in history), default=0)
        if step <= self._logged[trial.trial_id]:
            # A retried trial re-runs the epochs since its checkpoint: Optuna keeps the first
            # report of a step, and so does the run's metric history.
            return
        self._logged[trial.trial_id] = step
        stamp = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), stamp, step)
            for k, v in sorted(result.items())
            if k not in SKIPPED_RESULT_KEYS
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
        ]
        self.client.log_batch(run_id, metrics=metrics, tags=resolved_tags(result))

    def _note_node(self, ray_trial_id: str, run_id: str, result: dict) -> None:
        """The node a trial reports from, on its Optuna trial and MLflow run: at its first
        report, and again when a retry moved it to another node."""
        node = (str(result.get("node_ip", "")), str(result.get("hostname", "")))
        if not node[0] or self._nodes.get(ray_trial_id) == node:
            return
        frozen = self.optuna_trial(ray_trial_id)
        if frozen is None or frozen.state != TrialState.RUNNING:
            return
        self._nodes[ray_trial_id] = node
        set_node(self.study, frozen, *node)
        tags = [RunTag("cephtune.node_ip", node[0]), RunTag("cephtune.hostname", node[1])]
        self.client.log_batch(run_id, tags=tags)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._finish(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._finish(trial.trial_id)

    def _finish(self, ray_trial_id: str) -> None:
        run_id = self._runs.pop(ray_trial_id, None)
        self._logged.pop(ray_trial_id, None)
        self._nodes.pop(ray_trial_id, None)
        frozen = self.optuna_trial(ray_trial_id)
        if run_id is None or frozen is None:
            return
        close_run(self.client, run_id, frozen)
        self.update_parent()

    def update_parent(self) -> None:
        """Best-so-far value and trial number of the study on its parent run."""
        finished = self.study.get_trials(deepcopy=False, states=tuple(STATE_TAGS))
        tags = [RunTag("cephtune.finished_trials", str(len(finished)))]
        metrics = []
        best = ranking.ranked(self.study)[:1]
        if best:
            tags.append(RunTag("cephtune.best_trial", str(best[0].number)))
            stamp = int(time.time() * 1000)
            metrics.append(Metric(f"best_{self.metric}", best[0].value, stamp, len(finished)))
        self.client.log_batch(self.parent_run_id, metrics=metrics, tags=tags)


def close_run(client: MlflowClient, run_id: str, frozen: optuna.trial.FrozenTrial) -> None:
    """Tag a trial's run with its Optuna state (and reason) and end it accordingly."""
    state = STATE_TAGS.get(frozen.state, frozen.state.name.lower())
    tags = [RunTag("cephtune.state", state)]
    if FAIL_REASON in frozen.user_attrs:
        reason = str(frozen.user_attrs[FAIL_REASON])[:5000]
        tags.append(RunTag("cephtune.fail_reason", reason))
    client.log_batch(run_id, tags=tags)
    client.set_terminated(run_id, "FAILED" if frozen.state == TrialState.FAIL else "FINISHED")


def start_parent(
    client: MlflowClient,
    experiment_id: str,
    study_name: str,
    storage_url: str,
    spec_file: str,
    fixed: dict[str, Any],
) -> str:
    """The study's parent run: tags name the study, storage and spec; params the fixed settings."""
    run = client.create_run(
        experiment_id,
        run_name=study_name,
        tags={
            "cephtune.study": study_name,
            "cephtune.storage": mask_url(storage_url),
            "cephtune.spec_file": spec_file,
            "cephtune.role": "study",
        },
    )
    params = [Param(k, str(v)[:6000]) for k, v in sorted(fixed.items())]
    client.log_batch(run.info.run_id, params=params)
    return run.info.run_id


def sync_runs(client: MlflowClient, experiment_id: str, study: optuna.Study) -> int:
    """Close trial runs still RUNNING whose Optuna trial has ended; returns how many.

    A driver killed between telling Optuna and ending the MLflow run leaves such a run behind;
    the storage is the truth, so the run takes the trial's state.
    """
    trials = study.get_trials(deepcopy=False)
    closed = 0
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
        number = run.data.tags.get("cephtune.optuna_trial")
        if number is None or not number.isdigit() or int(number) >= len(trials):
            continue
        trial = trials[int(number)]
        if trial.state in STATE_TAGS:
            close_run(client, run.info.run_id, trial)
            closed += 1
    return closed
