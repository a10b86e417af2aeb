"""Search spaces: YAML -> validated ``Space`` -> Optuna define-by-run suggestions.

Schema (``spaces/*.yaml``)::

    params:                       # searched, in this order: each name is a trainable config key
      model: {type: categorical, choices: [hrnet, resnet]}
      backbone: {type: categorical, choices: [hrnet_w18, hrnet_w32], when: {model: hrnet}}
      image_size: {type: categorical, choices: [128, 256, 512]}
      batch_size: {type: int, low: 8, high: 32, step: 4,
                   cases: [{when: {image_size: 512}, high: 16}]}
    fixed:                        # constant trainable settings for every trial
      loss: adaptive_wing
    warm_start: guides            # or a list of points, evaluated first

``when`` and ``cases`` are in ``search.studyfiles.conditions``; ``warm_start`` in
``search.studyfiles.warmstart``; loading and checking a file in ``search.studyfiles.space_file``.
``walk`` goes through the parameters as a trial does: sampling, placing warm-start points and
checking the rules between settings all walk with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from search.studyfiles.conditions import Condition, describe, holds, same


@dataclass(frozen=True)
class Param:
    """One searched parameter: its base distribution, when it is sampled, and dependent ranges."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    when: tuple[Condition, ...] = ()
    cases: tuple[Case, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample this distribution (cases are picked by ``pick``, not here)."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(
                self.name, self.low, self.high, log=self.log, step=self.step or 1
            )
        return trial.suggest_categorical(self.name, list(self.choices))

    def active(self, values: dict[str, Any]) -> bool | None:
        """Whether this parameter is sampled, given the values sampled before it."""
        return holds(self.when, values)

    def pick(self, values: dict[str, Any]) -> tuple[Param, tuple[Condition, ...]] | None:
        """The distribution for this trial (first matching case, else the base) and its case's
        conditions; None when that hangs on a value the sampler has yet to pick."""
        for case in self.cases:
            match = holds(case.when, values)
            if match is None:
                return None
            if match:
                return case.param, case.when
        return self, ()

    def contains(self, value: Any) -> bool:
        """Whether this distribution (ignoring cases) can produce ``value``."""
        if self.kind == "categorical":
            return any(same(value, c) for c in self.choices)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (self.kind == "int" and not isinstance(value, int)):
            return False
        tol = 1e-9 * max(abs(self.low), abs(self.high), 1)
        if not self.low - tol <= value <= self.high + tol:
            return False
        if self.step is None:
            return True
        steps = (value - self.low) / self.step
        return abs(steps - round(steps)) * self.step <= tol

    def possible(self, value: Any) -> bool:
        """Whether any trial can give this parameter ``value`` (the base or any case)."""
        return self.contains(value) or any(c.param.contains(value) for c in self.cases)

    def describe(self, cases: bool = True) -> str:
        """The values this parameter can take, e.g. ``[8, 32] step 4``; with its cases' too."""
        if self.kind == "categorical":
            text = f"[{', '.join(map(str, self.choices))}]"
        else:
            text = f"[{self.low:g}, {self.high:g}]"
            text += f" step {self.step:g}" if self.step is not None else ""
            text += " log" if self.log else ""
        for case in self.cases if cases else ():
            text += f"; {case.param.describe()} when {describe(case.when)}"
        return text


@dataclass(frozen=True)
class Case:
    """A dependent range: ``param`` replaces the base distribution where ``when`` holds."""

    when: tuple[Condition, ...]
    param: Param


@dataclass(frozen=True)
class Space:
    """Validated search space: searched parameters, fixed settings and warm-start points."""

    path: str
    params: tuple[Param, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    warm_start: tuple[dict[str, Any], ...] = ()

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Define-by-run: sample every active parameter on ``trial``; return the fixed settings.

        A parameter whose condition fails is not suggested at all, so the trainable uses its
        default. Enqueued points (``warm_start``) come back through the same ``trial.suggest_*``
        calls."""
        walk(self.params, lambda step: step.dist.suggest(trial) if step.active else SKIP)
        return dict(self.fixed)

    def largest(self, name: str, default: float) -> float:
        """The largest value a trial can get for the numeric setting ``name``: fixed, searched
        (any case of its range), or the trainable's ``default`` where it is not searched or its
        ``when`` can leave it unsampled."""
        if name in self.fixed:
            return self.fixed[name]
        param = next((p for p in self.params if p.name == name), None)
        if param is None:
            return default
        ranges = (param, *(case.param for case in param.cases))
        values = [
            v
            for p in ranges
            for v in (p.choices if p.kind == "categorical" else (p.high,))
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        if param.when:
            values.append(default)
        return max(values, default=default)


SKIP: Any = object()  # what a walk's choice returns for a parameter that takes no value


@dataclass(frozen=True)
class Step:
    """A parameter as a trial reaches it, given the values chosen before it: whether it is
    sampled and the distribution it is sampled from (a case's, or the base) with that case's
    conditions. ``active`` and ``dist`` are None when they hang on a value the sampler has yet
    to pick (an ``UNKNOWN`` among the values)."""

    param: Param
    active: bool | None
    dist: Param | None
    case: tuple[Condition, ...]


def walk(params: Sequence[Param], choose: Callable[[Step], Any]) -> dict[str, Any]:
    """Go through ``params`` in sampling order, as a trial does; ``choose(step)`` gives each
    parameter's value (``SKIP``: none). The values chosen."""
    values: dict[str, Any] = {}
    for p in params:
        active = p.active(values)
        picked = p.pick(values) if active is not False else None
        dist, case = picked if picked is not None else (None, ())
        value = choose(Step(p, active, dist, case))
        if value is not SKIP:
            values[p.name] = value
    return values
