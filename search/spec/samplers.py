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
from typing import Any

import optuna

from search.spec.yamlfile import Checker

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


def load_sampler(check: Checker, raw: Any) -> SamplerSpec:
    """A ``sampler:`` value: a name, or a mapping of the name and TPE options."""
    if not isinstance(raw, dict):
        return SamplerSpec(check.string(raw, "sampler", SAMPLERS))
    check.keys(raw, ("name", *TPE_OPTIONS), prefix="sampler.")
    name = check.string(raw.get("name", "tpe"), "sampler.name", SAMPLERS)
    if name != "tpe" and set(raw) - {"name"}:
        extra = sorted(set(raw) - {"name"})[0]
        raise check.fail(f"sampler.{extra}", f"is a TPE option; sampler {name!r} takes none")
    default = SamplerSpec()
    startup = raw.get("n_startup_trials", default.n_startup_trials)
    flags = {}
    for key in ("multivariate", "group", "constant_liar"):
        flags[key] = raw.get(key, getattr(default, key))
        if not isinstance(flags[key], bool):
            raise check.fail(f"sampler.{key}", f"must be true or false, got {flags[key]!r}")
    if flags["group"] and not flags["multivariate"]:
        raise check.fail("sampler.group", "needs multivariate: true (Optuna's TPE)")
    return SamplerSpec(
        name,
        n_startup_trials=check.integer(startup, "sampler.n_startup_trials", minimum=0),
        **flags,
    )
