"""A study's record: the one owner of a trial's life in the Optuna storage and the MLflow store.

Optuna's ``Study.optimize`` keeps a trial's life in one place (``_run_trial``: ask, run, tell).
Ray runs cephtune's trials and tells of each event twice, to the searcher and to the callbacks
(``search.run.searcher``), in an order of its own; both hand every event to one
``StudyRecord``, which writes the Optuna storage first (``search.records.trials``) and the
MLflow store second (``search.records.lineage``), each epoch once to each, whichever of them
Ray calls first:

- ``add_trial``: the searcher asked Optuna for a trial; it carries its Ray trial id.
- ``start_trial``: the trial starts (again, after a retry or a restore) in its MLflow run,
  created once and linked to the Optuna trial.
- ``report_epoch``: an epoch past the last one each store holds (a retried trial re-runs the
  epochs since its checkpoint: the first report of an epoch counts), and the node it ran on.
- ``end_trial``: the truthful terminal state: COMPLETE at ``max_t`` with its last value,
  PRUNED before it (ASHA stopped it; Optuna keeps the last intermediate value as its value),
  FAIL with a reason (an error, no result, a non-finite metric); then the run takes that state
  and closes, and the parent run's best-so-far is updated.
- ``interrupt`` and ``settle``: trials a stopped driver left RUNNING, and a study that has all
  its trials (nothing RUNNING anywhere).

A record is process state: Ray pickles the searcher, the callbacks and the stopper apart, with
the experiment, and restores them on ``Tuner.restore``; each unpickles to the record this
process holds for the study. Only the settings travel in the pickle. What a killed driver may
have left half-written (the last epoch in each store, a run not yet linked) is read back from
the stores, never trusted from a saved experiment that can predate it.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.records import lineage, trials
from search.records.lineage import StudyRuns
from search.records.storage import open_storage

NO_RESULT = "no_result: the trial ended without reporting"


@dataclass(frozen=True)
class Epoch:
    """One report of a trial: its epoch, what it reported (the metric among it), and where it
    reported from as (node IP, host name, worker pid)."""

    step: int
    values: Mapping[str, Any]
    node: tuple[str, str, int] | None = None


# The record of each study this process runs, by (storage URL, study name): what an unpickled
# searcher, callback or stopper finds (``_shared``). Weak: a record lives as long as they do.
_RECORDS: weakref.WeakValueDictionary[tuple[str, str], StudyRecord] = weakref.WeakValueDictionary()


class StudyRecord:
    """The Optuna and MLflow record of study ``study_name`` (module docstring). ``runs`` is
    None where a study keeps no MLflow runs (the tabular benchmark)."""

    def __init__(
        self,
        study_name: str,
        storage_url: str,
        metric: str,
        max_t: int,
        runs: StudyRuns | None = None,
    ) -> None:
        self.study_name, self.storage_url = study_name, storage_url
        self.metric, self.max_t, self.runs = metric, max_t, runs
        self._study: optuna.Study | None = None
        self._client: MlflowClient | None = None
        self._trials: dict[str, optuna.Trial] = {}  # the Optuna trial of each Ray trial
        self._run_ids: dict[str, str] = {}  # the MLflow run of each trial started here
        self._logged: dict[str, int] = {}  # the last epoch in that run (read at first sight)
        self._nodes: dict[str, tuple[str, str, int]] = {}  # the node and worker last recorded
        self._last: dict[str, Epoch] = {}  # the newest epoch reported
        self._ended: set[str] = set()  # ended here: a second telling is a no-op
        _RECORDS[(storage_url, study_name)] = self  # a new record replaces an older one

    def __reduce__(self) -> tuple:
        return _shared, (self.study_name, self.storage_url, self.metric, self.max_t, self.runs)

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            storage = open_storage(self.storage_url)
            self._study = optuna.load_study(study_name=self.study_name, storage=storage)
        return self._study

    @property
    def client(self) -> MlflowClient:
        assert self.runs is not None, "a record without MLflow runs has no client"
        if self._client is None:
            self._client = MlflowClient(self.runs.tracking_uri)
        return self._client

    def taken(self) -> int:
        """Trials that finished on their own or are running: what the study has spent."""
        return trials.taken(self.study)

    def is_closed(self, ray_trial_id: str) -> bool:
        """Whether the Optuna trial of ``ray_trial_id`` has ended (it must not run again)."""
        found = trials.by_ray_id(self.study, ray_trial_id)
        return found is not None and found.state != TrialState.RUNNING

    def add_trial(self, ray_trial_id: str, trial: optuna.Trial) -> None:
        """The searcher asked Optuna for ``trial`` to run as Ray trial ``ray_trial_id``."""
        trials.link_ray(trial, ray_trial_id)
        self._trials[ray_trial_id] = trial

    def start_trial(self, ray_trial_id: str, config: dict[str, Any]) -> None:
        """The trial starts (or starts again): in its MLflow run, created and linked once."""
        found = self._open(ray_trial_id)
        if found is None or self.runs is None:
            return  # a trial Optuna already closed (re-run after a restore): nothing to log
        frozen = found[1]
        run_id = frozen.user_attrs.get(trials.MLFLOW_RUN_ID)
        if run_id is None:
            run_id = lineage.trial_run(
                self.client, self.runs, self.study_name, frozen.number, ray_trial_id, config
            )
            trials.attach_run(self.study, frozen, run_id)
        self._run_ids[ray_trial_id] = run_id

    def report_epoch(self, ray_trial_id: str, epoch: Epoch) -> None:
        """An epoch of a running trial: to Optuna, then to its run, each once."""
        last = self._last.get(ray_trial_id)
        # The node and worker go on at the first report, and again when a retry moved them.
        moved = bool(epoch.node and epoch.node[0]) and self._nodes.get(ray_trial_id) != epoch.node
        if last is not None and epoch.step <= last.step and not moved:
            return  # told already (by the other adapter, or a retry re-runs it): nothing to read
        found = None if ray_trial_id in self._ended else self._open(ray_trial_id)
        if found is None:
            return
        trial, frozen = found
        if last is None or epoch.step > last.step:
            self._last[ray_trial_id] = epoch
        value = epoch.values.get(self.metric)
        if value is not None and epoch.step > max(frozen.intermediate_values, default=0):
            trials.report(trial, value, epoch.step)
        micro = epoch.values.get(trials.MICRO_BATCH)
        if micro is not None and epoch.values.get(trials.GRAD_ACCUMULATION, 1) > 1:
            if frozen.user_attrs.get(trials.MICRO_BATCH) != micro:
                accumulation = int(epoch.values[trials.GRAD_ACCUMULATION])
                trials.set_micro_batch(self.study, frozen, int(micro), accumulation)
        run_id = self._run_ids.get(ray_trial_id)
        if moved:
            self._nodes[ray_trial_id] = epoch.node
            trials.set_node(self.study, frozen, *epoch.node)
            if run_id is not None:
                lineage.log_node(self.client, run_id, *epoch.node)
        if run_id is None:
            return
        if ray_trial_id not in self._logged:  # first sight in this process: what is logged
            self._logged[ray_trial_id] = lineage.logged_epoch(self.client, run_id, self.metric)
        if epoch.step > self._logged[ray_trial_id]:
            lineage.log_epoch(self.client, run_id, epoch.step, epoch.values)
            self._logged[ray_trial_id] = epoch.step

    def end_trial(
        self, ray_trial_id: str, last: Epoch | None = None, error: str | None = None
    ) -> None:
        """The trial ended, after ``last`` (else the newest epoch reported), with ``error``
        (the reason) if it failed: its state in Optuna, then its run closed with that state."""
        if ray_trial_id in self._ended:
            return
        if last is not None:
            self.report_epoch(ray_trial_id, last)  # the report that led to a stop, if missed
        last = self._last.get(ray_trial_id, last)
        found = self._open(ray_trial_id)
        if found is not None:
            state, value, reason = self._verdict(last, error)
            trials.end(self.study, found[0], state, value, reason)
        self._ended.add(ray_trial_id)
        trial = self._trials.pop(ray_trial_id, None)
        for table in (self._logged, self._nodes, self._last):
            table.pop(ray_trial_id, None)
        run_id = self._run_ids.pop(ray_trial_id, None)
        if run_id is None or self.runs is None:
            return
        frozen = (
            trials.current(self.study, trial)
            if trial is not None
            else trials.by_ray_id(self.study, ray_trial_id)
        )
        if frozen is not None:
            lineage.close_run(self.client, run_id, frozen)
            lineage.update_parent(self.client, self.runs, self.study, self.metric)

    def _verdict(
        self, last: Epoch | None, error: str | None
    ) -> tuple[TrialState, float | None, str | None]:
        value = None if last is None else last.values.get(self.metric)
        if error is not None:
            return TrialState.FAIL, None, error
        if last is None or value is None:
            return TrialState.FAIL, None, NO_RESULT
        if not math.isfinite(value):
            return TrialState.FAIL, None, f"non_finite_metric: {self.metric} = {value}"
        if last.step < self.max_t:
            return TrialState.PRUNED, None, None
        return TrialState.COMPLETE, value, None

    def _open(self, ray_trial_id: str) -> tuple[optuna.Trial, optuna.trial.FrozenTrial] | None:
        """The Optuna trial of ``ray_trial_id`` and a fresh read of it, while it is RUNNING.
        After ``Tuner.restore`` the searcher's saved state may predate trials Ray restored:
        those are found by the Ray trial id they carry."""
        trial = self._trials.get(ray_trial_id)
        if trial is None:
            frozen = trials.by_ray_id(self.study, ray_trial_id)
            if frozen is None or frozen.state != TrialState.RUNNING:
                return None
            trial = self._trials[ray_trial_id] = trials.live(self.study, frozen)
        frozen = trials.current(self.study, trial)
        return (trial, frozen) if frozen.state == TrialState.RUNNING else None

    def interrupt(self, keep: Collection[str] = ()) -> None:
        """Trials left RUNNING, but those of the Ray trials in ``keep`` (Ray continues them),
        are FAIL ``interrupted``; so are their MLflow runs."""
        for frozen in trials.interrupt(self.study, keep):
            run_id = frozen.user_attrs.get(trials.MLFLOW_RUN_ID)
            if run_id and self.runs is not None:
                lineage.close_run(self.client, run_id, frozen)

    def settle(self) -> None:
        """A study that has all its trials: no trial or run stays RUNNING anywhere."""
        self.interrupt()
        if self.runs is not None:
            lineage.sync_runs(self.client, self.runs.experiment_id, self.study)
            lineage.end_parent(self.client, self.runs)


def _shared(
    study_name: str, storage_url: str, metric: str, max_t: int, runs: StudyRuns | None
) -> StudyRecord:
    """The record an unpickled searcher, callback or stopper belongs to: the one this process
    holds for the study, else a new one from the pickled settings."""
    found = _RECORDS.get((storage_url, study_name))
    if found is not None and found.runs == runs:
        return found
    return StudyRecord(study_name, storage_url, metric, max_t, runs)
