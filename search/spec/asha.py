"""ASHA early stopping (``asha:`` in a study file), checked against the space's warmup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from search.spec.space import Space
from search.spec.yamlfile import Checker
from trainables.config import TrainConfig


@dataclass(frozen=True)
class Asha:
    """ASHA early stopping on the study's metric, with rungs at grace * factor^k epochs after
    a trial's warmup, so that every rung compares trials that are all past their warmup."""

    grace_period: int = 1
    reduction_factor: int = 2


def load_asha(check: Checker, raw: Any, max_epochs: int, space: Space) -> Asha | None:
    """An ``asha:`` value (a mapping, or false: no early stopping), checked against the
    study's ``max_epochs`` and the largest warmup its space can give a trial."""
    if raw is False:
        return None
    if not isinstance(raw, dict):
        raise check.fail("asha", f"must be a mapping or false (no early stopping), got {raw!r}")
    check.keys(raw, ("grace_period", "reduction_factor"), prefix="asha.")
    grace = check.integer(raw.get("grace_period", 1), "asha.grace_period", minimum=1)
    if grace > max_epochs:
        raise check.fail("asha.grace_period", f"must be <= max_epochs ({max_epochs}), got {grace}")
    factor = check.integer(raw.get("reduction_factor", 2), "asha.reduction_factor", minimum=2)
    default = TrainConfig.warmup_epochs
    warmup = space.largest("warmup_epochs", default)
    if warmup + grace > max_epochs:
        searched = any(p.name == "warmup_epochs" for p in space.params)
        source = (
            f"the space can sample warmup_epochs {warmup:g}"
            if searched
            else f"warmup_epochs is {warmup:g}"
            + ("" if "warmup_epochs" in space.fixed else " (the trainable's default)")
        )
        raise check.fail(
            "asha.grace_period",
            f"rungs count epochs after warmup, and {source}: {warmup:g} + grace_period {grace} "
            f"> max_epochs ({max_epochs}), so such a trial never reaches a rung; lower the "
            "warmup or grace_period, or raise max_epochs",
        )
    return Asha(grace, factor)
