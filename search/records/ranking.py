"""Which trials are best: the one ranking the summary, ``best``, ``status``, ``promote``, the
report and the MLflow parent run all read.

Only COMPLETE trials rank: a pruned trial never ran its full schedule, so its value is not
comparable (the report lists pruned ones after, by their last value).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.records.trials import (
    METRIC,
    SPEC,
    budget,
    epoch_budget,
    interrupted,
    trial_config,
    unit,
)
from trainables.errors import ConfigError


def _sign(study: optuna.Study) -> float:
    return -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0


def ranked(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials, best first (ties by trial number)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(done, key=lambda t: (_sign(study) * t.value, t.number))


def valued_first(study: optuna.Study, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """``trials`` with a value (COMPLETE, or PRUNED with its last one) best first, then the
    rest (failed, running) by number: the report's order."""
    scored = sorted(
        (t for t in trials if t.value is not None), key=lambda t: (_sign(study) * t.value, t.number)
    )
    return scored + [t for t in trials if t.value is None]


def best(study: optuna.Study) -> dict[str, Any]:
    """The best COMPLETE trial as plain data (``best --json``)."""
    found = ranked(study)
    if not found:
        raise ConfigError(f"study {study.study_name!r} has no finished trial yet")
    trial = found[0]
    metric = study.user_attrs.get(METRIC, "value")
    return {
        "study": study.study_name,
        "trial": trial.number,
        metric: trial.value,
        "value": trial.value,
        "params": trial.params,
        "config": trial_config(study, trial),
    }


def status(study: optuna.Study, now: datetime | None = None) -> dict[str, Any]:
    """Trial counts by state, the best so far (None before the first COMPLETE trial), the
    running trials with their epochs, and the epochs run and left with an ETA: the most
    left at the pace the trials have kept (trial-seconds per epoch), shared by the running
    ones (None when none runs, or nothing has been timed yet)."""
    now = now or datetime.now()
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    metric = study.user_attrs.get(METRIC, "value")
    num_samples = budget(study)
    max_epochs = study.user_attrs.get(SPEC, {}).get("max_epochs")
    running = [t for t in trials if t.state == TrialState.RUNNING]
    done, left = epoch_budget(trials, num_samples or 0, max_epochs or 0)
    busy = sum(
        ((t.datetime_complete or now) - t.datetime_start).total_seconds()
        for t in trials
        if t.datetime_start is not None and t.intermediate_values and not interrupted(t)
    )
    eta = None
    if running and done and num_samples and max_epochs:
        eta = left * busy / done / len(running)
    return {
        "study": study.study_name,
        "trials": len(trials),
        "states": dict(sorted(counts.items())),
        "interrupted": sum(interrupted(t) for t in trials),  # FAILs counted in states too
        "best": best(study) if counts.get("COMPLETE") else None,
        "metric": metric,
        "unit": unit(metric),
        "num_samples": num_samples,
        "max_epochs": max_epochs,
        "running": [
            {
                "trial": t.number,
                "epochs": len(t.intermediate_values),
                metric: t.intermediate_values[max(t.intermediate_values)]
                if t.intermediate_values
                else None,
            }
            for t in running
        ],
        "epochs_run": done,
        "epochs_left_at_most": left if num_samples and max_epochs else None,
        "eta_s": eta,
    }
