"""Warm start: points a study evaluates before its sampler takes over (``warm_start:``).

``warm_start: guides`` takes the guides' recommended configurations that lie inside the space
and silently skips the others; ``warm_start: [{...}, ...]`` takes explicit points, each of which
must lie inside the space. A point holds searched parameters only (fixed settings come with
every trial) and is enqueued as is: Optuna's ``trial.suggest_*`` returns its values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from search.studyfiles.conditions import UNKNOWN, describe, same
from search.studyfiles.space import SKIP, Param, Space, Step, walk
from trainables.config import DEFAULTS
from trainables.schema import fail, unknown_key
from trainables.setting import typed

_COLUMNS = ("model", "lr", "image_size", "batch_size", "warmup_epochs", "loss")
# The guides' recommended configurations (listed in the README's Space files), in their order.
# Epochs are the study's budget, not part of a point; the resnet row's image size is the
# implied 256.
GUIDES: dict[str, dict[str, Any]] = {
    name: dict(zip(_COLUMNS, row, strict=True))
    for name, row in (
        ("balanced", ("hrnet", 5e-4, 256, 12, 5, "adaptive_wing")),
        ("accurate", ("hrnet", 1e-4, 256, 8, 5, "adaptive_wing")),
        ("fast", ("hrnet", 5e-4, 128, 32, 5, "adaptive_wing")),
        ("fast-24", ("hrnet", 5e-4, 128, 24, 5, "adaptive_wing")),
        ("mid-16", ("hrnet", 5e-4, 256, 16, 5, "adaptive_wing")),
        ("large", ("hrnet", 5e-4, 512, 8, 5, "adaptive_wing")),
        ("resnet", ("resnet", 5e-4, 256, 8, 5, "adaptive_wing")),
    )
}


class _Outside(Exception):
    """A point is not in the space: ``name`` breaks ``rule``."""

    def __init__(self, name: str, rule: str) -> None:
        super().__init__(name, rule)
        self.name, self.rule = name, rule


def load_warm_start(where: str, raw: Any, space: Space) -> tuple[dict[str, Any], ...]:
    """The ``warm_start`` of a space file (``guides``, a list of mappings or None, as its schema
    checked) against the finished ``space``: the points to enqueue, in order."""
    params, fixed = space.params, space.fixed
    if raw is None:
        return ()
    if isinstance(raw, str):
        return guides_points(params, fixed)
    names = [p.name for p in params]
    points = []
    for i, point in enumerate(raw):
        key = f"warm_start[{i}]"
        for n in point:
            if n not in names:
                raise unknown_key(where, f"{key}.{n}", names)
        values = {n: typed(n, v, where, f"{key}.{n}") for n, v in point.items()}
        try:
            points.append(_place(params, values, explicit=True))
        except _Outside as e:
            raise fail(where, f"{key}.{e.name}", e.rule) from None
    return tuple(points)


def guides_points(params: Sequence[Param], fixed: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """The guides' configurations inside the space, as points of searched values.

    A row key the space fixes must equal the fixed value, one it leaves alone must equal the
    trainable's default. An active parameter the row does not name gets the trainable's default
    when that is in range (the guides' configurations are those defaults), else the sampler's
    pick; a row whose check hangs on such a pick is skipped.
    """
    searched = {p.name for p in params}
    points = []
    for row in GUIDES.values():
        if any(not same(v, fixed.get(k, DEFAULTS[k])) for k, v in row.items() if k not in searched):
            continue
        try:
            points.append(_place(params, row, explicit=False))
        except _Outside:
            continue
    return tuple(points)


def _place(params: Sequence[Param], given: Mapping[str, Any], explicit: bool) -> dict[str, Any]:
    """Walk the params as a trial would; the point to enqueue.

    ``explicit``: ``given`` must name exactly the parameters active under its own values.
    Otherwise (a guides row) a named inactive parameter must hold its default, and a missing
    active one is filled in as ``guides_points`` describes.
    """
    point: dict[str, Any] = {}

    def choose(step: Step) -> Any:
        p, named = step.param, step.param.name in given
        if step.active is None:
            if named:
                raise _Outside(p.name, "cannot be checked: its condition hangs on a sampled value")
            return UNKNOWN
        if not step.active:
            if named and (explicit or not same(given[p.name], DEFAULTS[p.name])):
                raise _Outside(
                    p.name, f"is not sampled at this point: {describe(p.when)} does not hold"
                )
            return SKIP
        if not named:
            if explicit:
                reason = f" ({describe(p.when)} holds)" if p.when else ""
                raise _Outside(p.name, f"is missing: this point samples it{reason}")
            if step.dist is None or not step.dist.contains(DEFAULTS[p.name]):
                return UNKNOWN
        value = given[p.name] if named else DEFAULTS[p.name]
        if step.dist is None:
            raise _Outside(p.name, "cannot be checked: its range hangs on a sampled value")
        if not step.dist.contains(value):
            where = f" (when {describe(step.case)})" if step.case else ""
            rule = f"must be in {step.dist.describe(cases=False)}{where}, got {value!r}"
            raise _Outside(p.name, rule)
        point[p.name] = value
        return value

    walk(params, choose)
    return point
