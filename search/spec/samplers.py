"""The samplers a study may name (``sampler:``), their options, and how each is built.

A study file names a sampler (``sampler: tpe``) or gives it with options::

    sampler: {name: tpe, n_startup_trials: 5, multivariate: true, group: true,
              constant_liar: true}

The TPE defaults differ from Optuna's (10 random start-up trials, independent univariate
models, no liar) because ``benchmarks/search_efficiency.py`` measured them better on a study's
small budgets: with ASHA most trials end at the first rung, so ten random start-up trials were
most of the budget; ``multivariate`` + ``group`` model the conditional parameters jointly
(``when:`` in a space); ``constant_liar`` keeps concurrent trials from proposing the same point.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import optuna

SAMPLERS = ("tpe", "random")  # random: a baseline to compare the search against
TPE_OPTIONS = ("n_startup_trials", "multivariate", "group", "constant_liar")


@dataclass(frozen=True)
class SamplerSpec:
    """A study's sampler: ``name`` and, for TPE, its options (ignored by ``random``)."""

    name: str = "tpe"
    n_startup_trials: int = 5
    multivariate: bool = True
    group: bool = True
    constant_liar: bool = True


def make_sampler(spec: SamplerSpec, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of ``spec``, seeded. Optuna marks ``multivariate``, ``group`` and
    ``constant_liar`` experimental and warns each time; they are our documented defaults, so the
    warning is no news to the user and is kept off stderr."""
    if spec.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=spec.n_startup_trials,
            multivariate=spec.multivariate,
            group=spec.group,
            constant_liar=spec.constant_liar,
        )
