"""The samplers a study may name (``sampler:``), and how each is built."""

from __future__ import annotations

from collections.abc import Callable

import optuna

SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,  # Optuna's default: 10 random start-up trials, then TPE
    "random": optuna.samplers.RandomSampler,  # a baseline to compare the search against
}


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    return SAMPLERS[name](seed=seed)
