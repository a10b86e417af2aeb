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
from typing import Annotated, Any, Literal, Union

import optuna
from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from trainables.schema import STRICT, rule_error

SAMPLERS = ("tpe", "random")  # random: a baseline to compare the search against
_STARTUP = "random trials before TPE models the results"
_MULTIVARIATE = "model the parameters jointly"
_GROUP = "model each group of parameters that occur together (conditional spaces)"
_LIAR = "concurrent trials do not propose the same point"


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


class SamplerFile(BaseModel):
    """The mapping form of ``sampler:`` (its defaults are ``SamplerSpec``'s)."""

    model_config = STRICT

    name: Literal[SAMPLERS] = Field(SamplerSpec.name, description="tpe | random (a baseline)")
    n_startup_trials: Annotated[int, Field(ge=0, description=_STARTUP)] = (
        SamplerSpec.n_startup_trials
    )
    multivariate: bool = Field(SamplerSpec.multivariate, description=_MULTIVARIATE)
    group: bool = Field(SamplerSpec.group, description=_GROUP)
    constant_liar: bool = Field(SamplerSpec.constant_liar, description=_LIAR)

    @model_validator(mode="after")
    def _options(self) -> SamplerFile:
        options = sorted(self.model_fields_set - {"name"})
        if self.name != "tpe" and options:
            raise rule_error(f"is a TPE option; sampler {self.name!r} takes none", key=options[0])
        if self.group and not self.multivariate:
            raise rule_error("needs multivariate: true (Optuna's TPE)", key="group")
        return self

    def spec(self) -> SamplerSpec:
        return SamplerSpec(**self.model_dump())


def _sampler_kind(value: Any) -> str:
    return "options" if isinstance(value, dict) else "name"


Sampler = Annotated[
    Union[  # noqa: UP007
        Annotated[Literal[SAMPLERS], Tag("name")],
        Annotated[SamplerFile, Tag("options")],
    ],
    Discriminator(_sampler_kind),
    Field(description="tpe | random, or a mapping of the name and TPE's options"),
]


def sampler_spec(value: str | SamplerFile) -> SamplerSpec:
    """The ``SamplerSpec`` a study file's ``sampler:`` (a name or options) stands for."""
    return SamplerSpec(value) if isinstance(value, str) else value.spec()
