"""A study's record in the Optuna storage: the attributes cephtune keeps on the study and its
trials, which trials count as finished, and the one writer of a trial's terminal state.

Optuna's own ``Study.optimize`` has one path to ``tell`` (``_run_trial``); here it is ``end``:
COMPLETE with the last value, PRUNED (Optuna keeps the last intermediate value), FAIL with a
reason. ``interrupt`` is the named mechanism for trials a stopped driver left RUNNING (Optuna's
counterpart is ``fail_stale_trials``). This is the only module that reaches into Optuna's
storage by trial id; its writers of a trial (``link_ray``, ``report``, ``set_node``,
``attach_run``, ``end``, ``interrupt``) are called by the study's record only
(``search.records.study_record``), which decides when.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from trainables import artifacts as trainables_artifacts

# Attributes of a trial.
FAIL_REASON = "fail_reason"  # why a FAIL failed: nan_loss: …, error: …, worker_died: …
RAY_TRIAL_ID = "ray_trial_id"  # the Ray trial that runs it
MLFLOW_RUN_ID = "mlflow_run_id"  # its nested MLflow run
NODE_IP = "node_ip"  # the Ray node it ran on (the last, when a retry moved it)
HOSTNAME = "hostname"  # that node's host name
WORKER_PID = "worker_pid"  # the pid of the Ray worker process that runs it there (the last)
# The micro-batch it trains with and its gradient accumulation, set once a step ran out of
# memory and the run went on with a smaller one (``trainables.train.fitted_step``).
MICRO_BATCH = trainables_artifacts.MICRO_BATCH
GRAD_ACCUMULATION = trainables_artifacts.GRAD_ACCUMULATION
INTERRUPTED = "interrupted: the driver stopped before this trial finished"

# Attributes of a study (``record_study``), read by resume, the summary, promote and the report.
SPEC = "spec"  # the checked study file as JSON (StudySpec.record), compared on resume
CONSTANTS = "constants"  # the trainable settings every trial shares
METRIC = "metric"
STUDY_FILE = "study_file"  # absolute path of the study file
PROJECT = "project"  # the project folder the study was started in (its Layout root)
MLFLOW_TRACKING_URI = "mlflow_tracking_uri"  # masked
MLFLOW_EXPERIMENT_ID = "mlflow_experiment_id"
MLFLOW_PARENT_RUN_ID = "mlflow_parent_run_id"
RAY_RUN = "ray_run"  # the Ray experiment's run name (studies/NAME/<ray_run>)
NUM_SAMPLES = "num_samples"  # the budget `resume --num-samples` raised it to (else the spec's)
BASELINE = "mean_shape_mre_mm"  # valid MRE of the train-set mean shape, what a model must beat

ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# How an ended trial's state reads in MLflow (``cephtune.state``) and in the report.
STATE_TAGS = {
    TrialState.COMPLETE: "completed",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
}


def record_study(study: optuna.Study, values: dict[str, Any]) -> None:
    for key, value in values.items():
        study.set_user_attr(key, value)


def budget(study: optuna.Study) -> int | None:
    """How many trials the study runs: what ``resume --num-samples`` last raised it to, else
    its study file's ``num_samples`` (None for a study cephtune did not start)."""
    attrs = study.user_attrs
    return attrs.get(NUM_SAMPLES, attrs.get(SPEC, {}).get("num_samples"))


def epoch_budget(
    found: Collection[FrozenTrial], num_samples: int, max_epochs: int
) -> tuple[int, int]:
    """Epochs run by the trials ``found`` (interrupted ones left out: others replaced them),
    and the most that are left: every trial still to come and every running one to
    ``max_epochs`` (early stopping only makes it fewer)."""
    counted = [t for t in found if not interrupted(t)]
    done = sum(len(t.intermediate_values) for t in counted)
    running = [t for t in counted if t.state == TrialState.RUNNING]
    left = max(0, num_samples - len(counted)) * max_epochs + sum(
        max(0, max_epochs - len(t.intermediate_values)) for t in running
    )
    return done, left


def unit(metric: str) -> str:
    """The unit a metric is in, by cephtune's naming (``mre_mm``): ``mm`` or none."""
    return "mm" if metric.endswith("_mm") else ""


def against_baseline(value: float, baseline: float) -> str:
    """How an MRE compares with the mean-shape baseline: ``3.20x lower``, or ``no lower than
    the baseline`` (a model that learned nothing yet)."""
    if 0 < value < baseline:
        return f"{baseline / value:.2f}x lower"
    return "no lower than the baseline: the model has not learned the task yet"


def duration(seconds: float) -> str:
    """``1h05m``, ``3m07s``: a duration as the status lines show it."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def interrupted(trial: FrozenTrial) -> bool:
    """A trial the driver's stop ended (FAIL, interrupted): another one replaced it."""
    return trial.state == TrialState.FAIL and trial.user_attrs.get(FAIL_REASON) == INTERRUPTED


def finished(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that ended on their own: completed, pruned, or failed other than by interruption."""
    return [t for t in study.get_trials(deepcopy=False, states=ENDED) if not interrupted(t)]


def trial_config(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    """The trial's full trainable config: the study's constants plus the sampled params."""
    return {**study.user_attrs.get(CONSTANTS, {}), **trial.params}


def training_config(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    """The trial's config for a run of its own (``search.py train``, ``promote``): its
    ``best.pt`` keeps the epoch that is best by what the study optimised."""
    return {
        **trial_config(study, trial),
        "best_metric": study.user_attrs.get(METRIC, "mre_mm"),
        "best_mode": "max" if study.direction == StudyDirection.MAXIMIZE else "min",
    }


def taken(study: optuna.Study) -> int:
    """Trials that finished on their own or are running (a running trial ends counted)."""
    return sum(
        t.state == TrialState.RUNNING or (t.state.is_finished() and not interrupted(t))
        for t in study.get_trials(deepcopy=False)
    )


def by_ray_id(study: optuna.Study, ray_trial_id: str) -> FrozenTrial | None:
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(RAY_TRIAL_ID) == ray_trial_id:
            return trial
    return None


def current(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """A fresh read of a live trial (its state and intermediate values now)."""
    return study._storage.get_trial(trial._trial_id)


def live(study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial:
    """The handle of a stored trial to report to and end (a trial Ray restored)."""
    return optuna.Trial(study, frozen._trial_id)


def link_ray(trial: optuna.Trial, ray_trial_id: str) -> None:
    """Name the Ray trial that runs a new Optuna trial (once: a trial keeps its first)."""
    if RAY_TRIAL_ID not in trial.user_attrs:
        trial.set_user_attr(RAY_TRIAL_ID, ray_trial_id)


def report(trial: optuna.Trial, value: float, step: int) -> None:
    """An epoch's value of a running trial (its intermediate value at ``step``)."""
    trial.report(value, step)


def end(
    study: optuna.Study,
    trial: optuna.Trial,
    state: TrialState,
    value: float | None = None,
    reason: str | None = None,
) -> None:
    """Tell a trial's terminal state: the one place that does (``FAIL`` carries ``reason``)."""
    if state == TrialState.FAIL:
        trial.set_user_attr(FAIL_REASON, reason or "error: the trial failed")
        study.tell(trial, state=TrialState.FAIL)
    elif state == TrialState.PRUNED:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, value)


def interrupt(study: optuna.Study, keep: Collection[str] = ()) -> list[FrozenTrial]:
    """Mark trials still RUNNING FAIL (``interrupted``), except those of the Ray trials in
    ``keep`` (Ray continues them); returns them as they are now stored."""
    storage = study._storage
    ended = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(RAY_TRIAL_ID) in keep:
            continue
        storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, INTERRUPTED)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        ended.append(storage.get_trial(trial._trial_id))
    return ended


def set_node(study: optuna.Study, trial: FrozenTrial, ip: str, hostname: str, pid: int) -> None:
    """Where a running trial runs now (its first report, and again when a retry moved it)."""
    study._storage.set_trial_user_attr(trial._trial_id, NODE_IP, ip)
    study._storage.set_trial_user_attr(trial._trial_id, HOSTNAME, hostname)
    study._storage.set_trial_user_attr(trial._trial_id, WORKER_PID, pid)


def set_micro_batch(
    study: optuna.Study, trial: FrozenTrial, micro_batch: int, accumulation: int
) -> None:
    """The smaller micro-batch a trial went on with after running out of memory."""
    study._storage.set_trial_user_attr(trial._trial_id, MICRO_BATCH, micro_batch)
    study._storage.set_trial_user_attr(trial._trial_id, GRAD_ACCUMULATION, accumulation)


def attach_run(study: optuna.Study, trial: FrozenTrial, run_id: str) -> None:
    """Link a trial to its MLflow run (a FrozenTrial has no setter of its own)."""
    study._storage.set_trial_user_attr(trial._trial_id, MLFLOW_RUN_ID, run_id)
