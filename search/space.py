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

``when`` and ``cases`` are in ``search.conditions``; ``warm_start`` in ``search.warmstart``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna

from search.conditions import Condition, describe, evaluate, parse_when, same
from search.schema import Checker, load_mapping
from search.warmstart import load_warm_start
from trainables.config import TrainConfig, coerce, field_type, value_rule

# Keys the study sets for every trial: a space may neither search nor fix them.
STUDY_KEYS = frozenset(
    {
        "data_dir",
        "dataset_format",
        "synthetic",
        "cache_dir",
        "annotator",
        "epochs",
        "num_threads",
        "seed",
    }
)
PARAM_KEYS = {
    "float": ("type", "low", "high", "log", "step"),
    "int": ("type", "low", "high", "log", "step"),
    "categorical": ("type", "choices"),
}
# What a case may override. Optuna keeps one log setting and one set of choices per parameter
# name for the whole study, so ``log`` and ``choices`` may only repeat the base value.
CASE_KEYS = {
    "float": ("low", "high", "step", "log"),
    "int": ("low", "high", "step", "log"),
    "categorical": ("choices",),
}


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
        return evaluate(self.when, values)

    def pick(self, values: dict[str, Any]) -> tuple[Param, tuple[Condition, ...]] | None:
        """The distribution for this trial (first matching case, else the base) and its case's
        conditions; None when that hangs on a value the sampler has yet to pick."""
        for case in self.cases:
            match = evaluate(case.when, values)
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
        values: dict[str, Any] = {}
        for p in self.params:
            if p.active(values):
                dist, _ = p.pick(values)
                values[p.name] = dist.suggest(trial)
        return dict(self.fixed)


def load_space(path: Path | str) -> Space:
    """Load and validate a space file; every error names the file and the key."""
    path = Path(path)
    raw = load_mapping(path)
    check = Checker(path)
    check.keys(raw, ("params", "fixed", "warm_start"), required=("params",))
    params_raw = check.mapping(raw["params"], "params")
    if not params_raw:
        raise check.fail("params", "must name at least one parameter to search")
    fixed_raw = check.mapping(raw.get("fixed") or {}, "fixed")
    fixed = {
        name: _trainable_value(check, f"fixed.{name}", name, value)
        for name, value in fixed_raw.items()
    }
    both = sorted(set(fixed) & set(params_raw))
    if both:
        raise check.fail(f"fixed.{both[0]}", "is also searched in params; keep one")
    order = list(params_raw)
    earlier: dict[str, Param] = {}
    for name, spec in params_raw.items():
        earlier[name] = _param(check, name, spec, earlier, order, fixed)
    params = tuple(earlier.values())
    warm_start = load_warm_start(check, raw.get("warm_start"), params, fixed)
    return Space(str(path), params, fixed, warm_start)


def _trainable_key(check: Checker, key: str, name: str) -> None:
    known = [k for k in TrainConfig.keys() if k not in STUDY_KEYS]
    if name in STUDY_KEYS:
        raise check.fail(key, "is set by the study file, not the space")
    if name not in known:
        check.keys({name: None}, known, prefix=key[: -len(name)])


def _trainable_value(check: Checker, key: str, name: str, value: Any) -> Any:
    """``value`` as trainable setting ``name``: its type and its rule (``lr`` > 0, a known
    ``loss``, ...), so a bad value fails the file rather than every trial."""
    _trainable_key(check, key, name)
    value = coerce(str(check.path), key, value, field_type(name))
    rule = value_rule(name, value)
    if rule:
        raise check.fail(key, rule)
    return value


# An int range is checked value by value (image_size must be a multiple of 32) up to this size;
# the trainable's other rules are bounds, which low and high decide.
MAX_CHECKED_VALUES = 10_000


def _range_rules(
    check: Checker,
    key: str,
    name: str,
    kind: str,
    low: float,
    high: float,
    step: float | None,
) -> None:
    """Every value the range can sample must be a valid setting of ``name``."""
    for bound, value in (("low", low), ("high", high)):
        rule = value_rule(name, value)
        if rule:
            raise check.fail(f"{key}.{bound}", rule)
    if kind == "int" and (high - low) // (step or 1) < MAX_CHECKED_VALUES:
        for value in range(low, high + 1, step or 1):
            rule = value_rule(name, value)
            if rule:
                raise check.fail(key, f"can sample {value}, but {name} {rule}")


def _param(
    check: Checker,
    name: str,
    spec: Any,
    earlier: dict[str, Param],
    order: list[str],
    fixed: dict[str, Any],
) -> Param:
    key = f"params.{name}"
    _trainable_key(check, key, name)
    spec = check.mapping(spec, key)
    kind = check.string(spec.get("type"), f"{key}.type", PARAM_KEYS)
    check.keys(spec, (*PARAM_KEYS[kind], "when", "cases"), prefix=f"{key}.")
    base_raw = {k: v for k, v in spec.items() if k not in ("when", "cases")}
    base = _distribution(check, key, name, kind, base_raw)
    when = ()
    if "when" in spec:
        when = parse_when(check, f"{key}.when", spec["when"], name, earlier, order, fixed)
    cases = spec.get("cases")
    if cases is None:
        return replace(base, when=when)
    if not isinstance(cases, list) or not cases:
        raise check.fail(f"{key}.cases", "must be a non-empty list of {when: ..., <overrides>}")
    parsed = []
    for i, case in enumerate(cases):
        ckey = f"{key}.cases[{i}]"
        case = check.mapping(case, ckey)
        check.keys(case, ("when", *CASE_KEYS[kind]), prefix=f"{ckey}.", required=("when",))
        case_when = parse_when(check, f"{ckey}.when", case["when"], name, earlier, order, fixed)
        overrides = {k: v for k, v in case.items() if k != "when"}
        if isinstance(overrides.get("log"), bool) and overrides["log"] != base.log:
            raise check.fail(
                f"{ckey}.log",
                f"must match {key}.log ({str(base.log).lower()}): Optuna cannot change a "
                "parameter's scale between trials",
            )
        param = _distribution(check, ckey, name, kind, {**base_raw, **overrides})
        if param.choices != base.choices:
            raise check.fail(
                f"{ckey}.choices",
                f"must match {key}.choices: Optuna cannot change a categorical's choices "
                "between trials (use when: to leave the parameter out instead)",
            )
        parsed.append(Case(case_when, param))
    return replace(base, when=when, cases=tuple(parsed))


def _distribution(check: Checker, key: str, name: str, kind: str, spec: dict[str, Any]) -> Param:
    """Validate one distribution (a base spec, or a base spec with a case's overrides)."""
    ftype = field_type(name).split("|")[0].strip()
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise check.fail(f"{key}.choices", "must be a non-empty list")
        values = [_trainable_value(check, f"{key}.choices", name, c) for c in choices]
        if len(set(map(repr, values))) != len(values):
            raise check.fail(f"{key}.choices", f"has duplicates: {choices}")
        return Param(name, kind, choices=tuple(values))
    if ftype not in ("int", "float") or (kind == "float" and ftype == "int"):
        raise check.fail(f"{key}.type", f"{kind} does not fit {name}, which is a {ftype}")
    for bound in ("low", "high"):
        if bound not in spec:
            raise check.fail(key, f"needs {bound}")
    num = check.integer if kind == "int" else check.number
    low, high = num(spec["low"], f"{key}.low"), num(spec["high"], f"{key}.high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise check.fail(f"{key}.log", f"must be true or false, got {log!r}")
    if low >= high:
        raise check.fail(f"{key}.low", f"must be < high, got low={low} high={high}")
    if log and low <= 0:
        raise check.fail(f"{key}.low", f"must be > 0 for a log scale, got {low}")
    step = spec.get("step")
    if step is not None:
        step = num(step, f"{key}.step")
        if step <= 0:
            raise check.fail(f"{key}.step", f"must be > 0, got {step}")
        if log:
            raise check.fail(f"{key}.step", "cannot be combined with log: true")
        if step > high - low:
            raise check.fail(f"{key}.step", f"must be <= high - low ({high - low:g}), got {step}")
    _range_rules(check, key, name, kind, low, high, step)
    return Param(name, kind, low, high, log, step)
