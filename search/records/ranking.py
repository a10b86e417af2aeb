"""Which trials are best: the one ranking the summary, ``best``, ``status``, ``promote``, the
report and the MLflow parent run all read.

Only COMPLETE trials rank: a pruned trial never ran its full schedule, so its value is not
comparable (the report lists pruned ones after, by their last value).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.records.trials import METRIC, interrupted, trial_config
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


def status(study: optuna.Study) -> dict[str, Any]:
    """Trial counts by state and the best so far (None before the first COMPLETE trial)."""
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    return {
        "study": study.study_name,
        "trials": len(trials),
        "states": dict(sorted(counts.items())),
        "interrupted": sum(interrupted(t) for t in trials),  # FAILs counted in states too
        "best": best(study) if counts.get("COMPLETE") else None,
    }
