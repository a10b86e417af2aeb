"""Reading a study back from the Optuna storage: counts by state and the best trial."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna

from search.storage import mask_url, open_storage
from search.study import NAME_RULE, valid_name
from trainables.errors import ConfigError

# User attributes of an Optuna trial, written by the searcher and the tuner.
FAIL_REASON = "fail_reason"
RAY_TRIAL_ID = "ray_trial_id"
INTERRUPTED = "interrupted: the driver stopped before this trial finished"


def load(name: str, storage_url: str) -> optuna.Study:
    """The study ``name``; the name is checked first, since commands use ``studies/NAME``."""
    if not valid_name(name):
        raise ConfigError(f"study name {name!r} {NAME_RULE}")
    storage = open_storage(storage_url, "--storage")
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = ", ".join(sorted(s.study_name for s in storage.get_all_studies())) or "none"
        raise ConfigError(
            f"study {name!r} not found in {mask_url(storage_url)} (studies: {known})"
        ) from None


def interrupted(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial the driver's stop ended (FAIL, interrupted): it was replaced by another."""
    return (
        trial.state == optuna.trial.TrialState.FAIL
        and trial.user_attrs.get(FAIL_REASON) == INTERRUPTED
    )


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that ended on their own: completed, pruned, or failed other than by interruption."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state
        in (
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL,
        )
        and not interrupted(t)
    ]


def trial_config(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The trial's full trainable config: the study's constants plus the sampled params."""
    return {**study.user_attrs.get("constants", {}), **trial.params}


def best(study: optuna.Study) -> dict[str, Any]:
    """The best finished trial as plain data."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        raise ConfigError(f"study {study.study_name!r} has no finished trial yet")
    trial = study.best_trial
    metric = study.user_attrs.get("metric", "value")
    return {
        "study": study.study_name,
        "trial": trial.number,
        metric: trial.value,
        "value": trial.value,
        "params": trial.params,
        "config": trial_config(study, trial),
    }


def status(study: optuna.Study) -> dict[str, Any]:
    """Trial counts by state and the best so far (None before the first finished trial)."""
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    out: dict[str, Any] = {
        "study": study.study_name,
        "trials": len(trials),
        "states": dict(sorted(counts.items())),
        "interrupted": sum(interrupted(t) for t in trials),  # FAILs counted in states too
    }
    out["best"] = best(study) if counts.get("COMPLETE") else None
    return out
