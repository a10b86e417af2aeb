"""OptunaSearch that tells the Optuna storage the truth about every trial.

Ray's ``OptunaSearch`` records a trial stopped by ASHA as COMPLETE, drops the intermediate value
of the step that led to the stop, and never records why a trial failed. Here:

- a trial that ran to ``max_t`` is COMPLETE with its last value and every intermediate value;
- a trial stopped earlier is PRUNED (Optuna keeps its last intermediate value as its value), so
  TPE sees it as pruned, not as a finished result;
- a trial that raised, ran out of memory, was killed, or hit a non-finite loss or metric is FAIL
  with the reason in the user attribute ``fail_reason``;
- every Optuna trial carries ``ray_trial_id``.

Ray calls the searcher from the driver only, so the storage has one writer.
"""

from __future__ import annotations

import math
from typing import Any

import cloudpickle
import optuna
from optuna.trial import TrialState
from ray.exceptions import RayActorError
from ray.tune import Callback, Stopper
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search.records import trials
from search.records.storage import open_storage

STEP = "training_iteration"


# Ray hands the searcher trial ids only, and writes a failed trial's error file to a staging
# folder before telling the searcher. ``LiveTrials`` (a callback, driver-side like the searcher)
# keeps the live Trial objects so the searcher can read the error. Module-level, because Ray
# pickles callbacks and searcher separately and a restored experiment must find the same table.
_LIVE: dict[str, Any] = {}


class LiveTrials(Callback):
    """Registers each started trial for ``StudySearch``; forgets it once it has ended."""

    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        _LIVE[trial.trial_id] = trial

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        _LIVE.pop(trial.trial_id, None)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        _LIVE.pop(trial.trial_id, None)


class StudySearch(OptunaSearch):
    """``OptunaSearch`` that records PRUNED, COMPLETE and FAIL (with a reason) truthfully, and
    ends the search when the storage holds ``num_samples`` trials.

    The storage, not Ray's trial counter, decides how many trials are left: after a driver was
    killed, Ray's saved experiment can predate trials that had already finished in Optuna, and
    counting from it would run too many. Ray is given no sample limit and asks until this
    searcher says FINISHED.
    """

    def __init__(self, *args: Any, max_t: int, num_samples: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_t = max_t
        self._num_samples = num_samples
        self._last: dict[str, dict[str, Any]] = {}

    def _taken(self) -> int:
        """Trials that finished on their own or are running (a running trial ends counted)."""
        return sum(
            t.state == TrialState.RUNNING or (t.state.is_finished() and not trials.interrupted(t))
            for t in self._ot_study.get_trials(deepcopy=False)
        )

    def suggest(self, trial_id: str) -> dict | None:
        if self._ot_study is not None and self._taken() >= self._num_samples:
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        trial = self._ot_trials[trial_id]
        if trials.RAY_TRIAL_ID not in trial.user_attrs:
            trial.set_user_attr(trials.RAY_TRIAL_ID, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get(STEP, 0) <= self._last.get(trial_id, {}).get(STEP, 0):
            return  # a retried trial re-running epochs since its checkpoint: the first counts
        self._last[trial_id] = result
        if self._link(trial_id) and self._is_open(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials or not self._link(trial_id):
            return
        self._completed_trials.add(trial_id)
        if not self._is_open(trial_id):  # already told, e.g. before a driver restart
            return
        trial = self._ot_trials[trial_id]
        result = result or self._last.get(trial_id) or {}
        value, step = result.get(self.metric), result.get(STEP)
        if value is not None and step is not None and step not in self._intermediate(trial_id):
            trial.report(value, step)  # the report that led to STOP never reached us
        reason = None
        if error:
            reason = self._error_reason(trial_id)
        elif value is None or step is None:
            reason = "no_result: the trial ended without reporting"
        elif not math.isfinite(value):
            reason = f"non_finite_metric: {self.metric} = {value}"
        if reason is not None:
            trials.end(self._ot_study, trial, TrialState.FAIL, reason=reason)
        elif step < self._max_t:
            trials.end(self._ot_study, trial, TrialState.PRUNED)
        else:
            trials.end(self._ot_study, trial, TrialState.COMPLETE, value)
        self._last.pop(trial_id, None)

    def _link(self, trial_id: str) -> bool:
        """Whether ``trial_id`` has its Optuna trial; after ``Tuner.restore`` the saved searcher
        state may predate trials Ray restored, so find those by the Ray trial id they carry."""
        if trial_id in self._ot_trials:
            return True
        frozen = trials.by_ray_id(self._ot_study, trial_id)
        if frozen is None or frozen.state != TrialState.RUNNING:
            return False
        self._ot_trials[trial_id] = trials.live(self._ot_study, frozen)
        return True

    def _frozen(self, trial_id: str) -> optuna.trial.FrozenTrial:
        return trials.current(self._ot_study, self._ot_trials[trial_id])

    def _is_open(self, trial_id: str) -> bool:
        return trial_id in self._ot_trials and self._frozen(trial_id).state == TrialState.RUNNING

    def _intermediate(self, trial_id: str) -> dict[int, float]:
        return self._frozen(trial_id).intermediate_values

    def _error_reason(self, trial_id: str) -> str:
        """The last line of the trial's exception; ``nan_loss: …`` for a non-finite loss."""
        trial = _LIVE.get(trial_id)
        path = trial.pickled_error_file if trial is not None else None
        if path is None:
            return "error: the trial failed (no error recorded)"
        try:
            with open(path, "rb") as f:
                error = cloudpickle.load(f)
        except (OSError, EOFError, cloudpickle.pickle.UnpicklingError):
            return "error: the trial failed (error file unreadable)"
        if isinstance(error, RayActorError):
            return f"worker_died: {type(error).__name__}"
        cause = getattr(error, "cause", None) or error
        kind = type(cause).__name__
        text = str(cause).strip().splitlines()
        message = text[-1] if text else ""
        if getattr(cause, "reason", None):  # NonFiniteLoss "nan_loss: …", OutOfMemory "oom: …"
            return message[:500]
        return f"error: {kind}: {message}"[:500]


class SkipClosedTrials(Stopper):
    """Stops a trial Ray restored whose Optuna trial had already ended: it finished after Ray
    last saved the experiment and before the driver was killed, so it must not run again."""

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.storage_url, self.study_name = storage_url, study_name
        self._seen: set[str] = set()  # trials already found open in this driver process

    def __getstate__(self) -> dict[str, Any]:  # a restored driver checks every trial again
        return {**self.__dict__, "_seen": set()}

    def __call__(self, trial_id: str, result: dict) -> bool:
        if trial_id in self._seen:  # open at its first result here: the searcher closes it
            return False
        self._seen.add(trial_id)
        storage = open_storage(self.storage_url)
        study = optuna.load_study(study_name=self.study_name, storage=storage)
        found = trials.by_ray_id(study, trial_id)
        return found is not None and found.state != TrialState.RUNNING

    def stop_all(self) -> bool:
        return False
