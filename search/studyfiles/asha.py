"""ASHA early stopping (``asha:`` in a study file): its keys and rules, checked against the
space's warmup.

``grace_period`` is a number of epochs (an integer) or a fraction of ``max_epochs`` (a number
below 1: ``0.1`` is a tenth of the schedule, at least one epoch), so that the first rung keeps
its place in the schedule when ``max_epochs`` changes. ``brackets`` > 1 is Hyperband's hedge
(Ray's ASHA brackets: later brackets start at higher rungs). ``adapt`` lets the lowest rungs stop
trials only while probes show they rank them (``search.run.early_stopping``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, Tag

from search.studyfiles.space import Space
from trainables.config import DEFAULTS
from trainables.schema import STRICT, Rule, fail


@dataclass(frozen=True)
class Asha:
    """ASHA early stopping on the study's metric, with rungs at grace * factor^k epochs after
    a trial's warmup, so that every rung compares trials that are all past their warmup."""

    grace_period: int = 1  # epochs after warmup (a fraction in the file is resolved here)
    reduction_factor: int = 2
    brackets: int = 1
    adapt: bool = True

    def rungs(self, max_epochs: int) -> list[int]:
        """The first bracket's rungs below ``max_epochs`` (epochs after warmup), as Ray's
        ASHA places them: grace, grace * factor, ..."""
        found, milestone = [], self.grace_period
        while milestone < max_epochs:
            found.append(milestone)
            milestone *= self.reduction_factor
        return found


def _whole(value: Any) -> Any:
    """An integral number of epochs written as a float (``2.0``) is that integer."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _grace_kind(value: Any) -> str:
    return "fraction" if isinstance(value, float) and not value.is_integer() else "epochs"


Grace = Annotated[
    Union[  # noqa: UP007
        Annotated[int, BeforeValidator(_whole), Field(ge=1), Tag("epochs")],
        Annotated[
            float,
            Field(gt=0, lt=1),
            Rule("must be an integer (epochs) or a fraction of max_epochs between 0 and 1"),
            Tag("fraction"),
        ],
    ],
    Discriminator(_grace_kind),
    Field(
        description="the first rung, in epochs after each trial's warmup, or as a fraction of "
        "max_epochs (at least one epoch)"
    ),
]


class AshaFile(BaseModel):
    """The ``asha:`` mapping of a study file (its defaults are ``Asha``'s)."""

    model_config = STRICT

    grace_period: Grace = Asha.grace_period
    reduction_factor: Annotated[
        int, Field(ge=2, description="a rung keeps the best 1/factor of the trials")
    ] = Asha.reduction_factor
    brackets: Annotated[
        int, Field(ge=1, description="Hyperband's brackets (later ones start at higher rungs)")
    ] = Asha.brackets
    adapt: bool = Field(
        Asha.adapt, description="the lowest rungs stop trials only while probes show they rank them"
    )

    def resolved(self, max_epochs: int) -> Asha:
        """The ``Asha`` of a study of ``max_epochs``: a fractional grace period in epochs."""
        grace = self.grace_period
        if isinstance(grace, float):
            grace = max(1, round(grace * max_epochs))
        return Asha(grace, self.reduction_factor, self.brackets, self.adapt)


def check_warmup(where: str, asha: Asha, max_epochs: int, space: Space) -> None:
    """A trial whose warmup leaves no room for the first rung (rungs count epochs after the
    warmup) would never be compared: the largest warmup the space can give a trial plus the
    grace period must fit in ``max_epochs``."""
    grace = asha.grace_period
    warmup = space.largest("warmup_epochs", DEFAULTS["warmup_epochs"])
    if warmup + grace <= max_epochs:
        return
    searched = any(p.name == "warmup_epochs" for p in space.params)
    source = (
        f"the space can sample warmup_epochs {warmup:g}"
        if searched
        else f"warmup_epochs is {warmup:g}"
        + ("" if "warmup_epochs" in space.fixed else " (the trainable's default)")
    )
    raise fail(
        where,
        "asha.grace_period",
        f"rungs count epochs after warmup, and {source}: {warmup:g} + grace_period {grace} "
        f"> max_epochs ({max_epochs}), so such a trial never reaches a rung; lower the "
        "warmup or grace_period, or raise max_epochs",
    )
