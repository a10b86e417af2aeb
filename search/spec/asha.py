"""ASHA early stopping (``asha:`` in a study file), checked against the space's warmup.

``grace_period`` is a number of epochs (an integer) or a fraction of ``max_epochs`` (a number
below 1: ``0.1`` is a tenth of the schedule, at least one epoch), so that the first rung keeps
its place in the schedule when ``max_epochs`` changes. ``brackets`` > 1 is Hyperband's hedge
(Ray's ASHA brackets: later brackets start at higher rungs). ``adapt`` lets the lowest rungs stop
trials only while probes show they rank them (``search.run.early_stopping``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from search.spec.space import Space
from search.spec.yamlfile import Checker
from trainables.config import TrainConfig

ASHA_KEYS = ("grace_period", "reduction_factor", "brackets", "adapt")


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


def load_asha(check: Checker, raw: Any, max_epochs: int, space: Space) -> Asha | None:
    """An ``asha:`` value (a mapping, or false: no early stopping), checked against the
    study's ``max_epochs`` and the largest warmup its space can give a trial."""
    if raw is False:
        return None
    if not isinstance(raw, dict):
        raise check.fail("asha", f"must be a mapping or false (no early stopping), got {raw!r}")
    check.keys(raw, ASHA_KEYS, prefix="asha.")
    default = Asha()
    grace = _grace(check, raw.get("grace_period", default.grace_period), max_epochs)
    if grace > max_epochs:
        raise check.fail("asha.grace_period", f"must be <= max_epochs ({max_epochs}), got {grace}")
    factor = check.integer(
        raw.get("reduction_factor", default.reduction_factor), "asha.reduction_factor", minimum=2
    )
    brackets = check.integer(raw.get("brackets", default.brackets), "asha.brackets", minimum=1)
    adapt = raw.get("adapt", default.adapt)
    if not isinstance(adapt, bool):
        raise check.fail("asha.adapt", f"must be true or false, got {adapt!r}")
    warmup = space.largest("warmup_epochs", TrainConfig.warmup_epochs)
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
    return Asha(grace, factor, brackets, adapt)


def _grace(check: Checker, raw: Any, max_epochs: int) -> int:
    """Epochs after warmup: an integer as given, a fraction (0 < f < 1) of ``max_epochs``."""
    if isinstance(raw, float) and not raw.is_integer():
        if not 0 < raw < 1:
            raise check.fail(
                "asha.grace_period",
                f"must be an integer (epochs) or a fraction of max_epochs between 0 and 1, "
                f"got {raw!r}",
            )
        return max(1, round(raw * max_epochs))
    if isinstance(raw, float):
        raw = int(raw)
    return check.integer(raw, "asha.grace_period", minimum=1)
