"""The Ray side of a study's record: the searcher, the callback and the stopper Ray calls, each
handing what Ray tells it to the study's ``StudyRecord`` (``search.records.study_record``).

Ray tells the searcher of a trial's results and end, and the callbacks of its start, results
and end, in an order of its own: the record writes Optuna and then MLflow, each epoch once,
whichever of them comes first. Ray's ``OptunaSearch`` on its own records a trial stopped by
ASHA as COMPLETE, drops the intermediate value of the step that led to the stop (Ray does not
pass that result to the searcher) and never records why a trial failed; the record does all
three truthfully. These adapters only translate: a Ray result into an ``Epoch``, a failed
trial's error file into a reason. All of it runs in the driver, so each store has one writer.
"""

from __future__ import annotations

from typing import Any

import cloudpickle
from ray.air.constants import TRAINING_ITERATION
from ray.exceptions import RayActorError
from ray.tune import Callback, Stopper
from ray.tune.result import CONFIG_PREFIX, DONE, HOSTNAME, NODE_IP, PID, TRIAL_ID
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search.records.study_record import Epoch, StudyRecord

STEP = TRAINING_ITERATION  # an epoch of our trainable (``trainables.trial``)
# What Ray adds to a result that is no number of the trial's (``config`` as Ray passes it to
# callbacks, ``config/…`` flattened as it passes it to the searcher).
RAY_KEYS = frozenset({TRIAL_ID, "date", HOSTNAME, NODE_IP, PID, DONE, CONFIG_PREFIX})


def epoch_of(result: dict | None) -> Epoch | None:
    """The epoch a Ray result reports (None for no result)."""
    if not result or STEP not in result:
        return None
    values = {
        k: v
        for k, v in result.items()
        if k not in RAY_KEYS and not k.startswith(f"{CONFIG_PREFIX}/")
    }
    node = (str(result.get(NODE_IP, "")), str(result.get(HOSTNAME, "")), int(result.get(PID) or 0))
    return Epoch(int(result[STEP]), values, node)


# Ray hands the searcher trial ids only, and writes a failed trial's error file to a staging
# folder before telling the searcher. ``LiveTrials`` (a callback, driver-side like the searcher)
# keeps the live Trial objects so the searcher can read the error. Module-level, because Ray
# pickles callbacks and searcher separately and a restored experiment must find the same table.
_LIVE: dict[str, Any] = {}


def error_reason(trial) -> str:
    """The last line of a failed Ray trial's exception; ``nan_loss: …`` for a non-finite loss,
    ``oom: …`` out of memory, ``worker_died: …`` for a killed worker."""
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


class LiveTrials(Callback):
    """Registers each started trial for ``StudySearch``; forgets it once it has ended."""

    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        _LIVE[trial.trial_id] = trial

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        _LIVE.pop(trial.trial_id, None)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        _LIVE.pop(trial.trial_id, None)


class RecordTrials(LiveTrials):
    """The callbacks' side of ``record``: each trial's start (its MLflow run), its results and
    its end, as Ray tells the callbacks of them."""

    def __init__(self, record: StudyRecord) -> None:
        super().__init__()
        self.record = record

    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        super().on_trial_start(iteration, trials, trial, **info)
        self.record.start_trial(trial.trial_id, trial.config)

    def on_trial_result(
        self, iteration: int, trials: list, trial, result: dict, **info: Any
    ) -> None:
        found = epoch_of(result)
        if found is not None:
            self.record.report_epoch(trial.trial_id, found)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.record.end_trial(trial.trial_id, epoch_of(trial.last_result))
        super().on_trial_complete(iteration, trials, trial, **info)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.record.end_trial(trial.trial_id, epoch_of(trial.last_result), error_reason(trial))
        super().on_trial_error(iteration, trials, trial, **info)


class StudySearch(OptunaSearch):
    """``OptunaSearch`` whose trials' lives are ``record``'s (by default a record of the study
    in ``storage``, an ``RDBStorage``, without MLflow runs), and which ends the search when the
    storage holds ``num_samples`` trials.

    The storage, not Ray's trial counter, decides how many trials are left: after a driver was
    killed, Ray's saved experiment can predate trials that had already finished in Optuna, and
    counting from it would run too many. Ray is given no sample limit and asks until this
    searcher says FINISHED.
    """

    def __init__(
        self,
        *args: Any,
        max_t: int,
        num_samples: int,
        record: StudyRecord | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._num_samples = num_samples
        if record is None:  # Optuna only, in the storage this searcher asks in
            record = StudyRecord(self._study_name, kwargs["storage"].url, self._metric, max_t)
        self._record = record

    def suggest(self, trial_id: str) -> dict | None:
        if self._ot_study is not None and self._record.taken() >= self._num_samples:
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        self._record.add_trial(trial_id, self._ot_trials[trial_id])
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        found = epoch_of(result)
        if found is not None:
            self._record.report_epoch(trial_id, found)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        reason = error_reason(_LIVE.get(trial_id)) if error else None
        self._record.end_trial(trial_id, epoch_of(result), reason)


class SkipClosedTrials(Stopper):
    """Stops a trial Ray restored whose Optuna trial had already ended: it finished after Ray
    last saved the experiment and before the driver was killed, so it must not run again."""

    def __init__(self, record: StudyRecord) -> None:
        self.record = record
        self._seen: set[str] = set()  # trials already found open in this driver process

    def __getstate__(self) -> dict[str, Any]:  # a restored driver checks every trial again
        return {**self.__dict__, "_seen": set()}

    def __call__(self, trial_id: str, result: dict) -> bool:
        if trial_id in self._seen:  # open at its first result here: the record closes it
            return False
        self._seen.add(trial_id)
        return self.record.is_closed(trial_id)

    def stop_all(self) -> bool:
        return False
