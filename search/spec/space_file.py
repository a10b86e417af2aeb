"""Space files (``spaces/*.yaml``): YAML -> a checked ``Space`` with its warm-start points.

Every parameter must name a trainable config key that the study does not set itself; every
value a range or a list can produce must pass the trainable's own rule for that key; every
(model, backbone) pair a space can produce must be one the model registry knows. A broken rule
is one ``ConfigError`` line naming the file and the key.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from search.spec.conditions import UNKNOWN, holds, parse_when
from search.spec.space import Case, Param, Space
from search.spec.trial_keys import STUDY_SET_KEYS
from search.spec.warmstart import load_warm_start
from search.spec.yamlfile import Checker, load_mapping
from trainables.config import TrainConfig, coerce, field_type, value_rule
from trainables.models import MODELS

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
    space = Space(str(path), tuple(earlier.values()), fixed)
    _check_backbones(check, space)
    return replace(space, warm_start=load_warm_start(check, raw.get("warm_start"), space))


def _trainable_key(check: Checker, key: str, name: str) -> None:
    known = [k for k in TrainConfig.keys() if k not in STUDY_SET_KEYS]
    if name in STUDY_SET_KEYS:
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


def _check_backbones(check: Checker, space: Space) -> None:
    """Every (model, backbone) pair the space can produce must be one the model registry
    knows (``backbone: hrnet_w99`` fails the file, not every trial). A backbone that is not
    searched or fixed is the model's default, which always fits."""
    default = TrainConfig()
    params = {p.name: p for p in space.params}
    for name, value in space.fixed.items():
        params.setdefault(name, Param(name, "categorical", choices=(value,)))
    backbone = params.get("backbone")
    if backbone is None:
        return
    model = params.get("model")
    models = model.choices if model is not None else (default.model,)
    if model is not None and model.kind != "categorical":
        return  # a model is a name: only a categorical can search it
    for model_name in models:
        given = {**{name: UNKNOWN for name in params}, "model": model_name}
        if holds(backbone.when, given) is False:
            continue  # this model never samples the backbone
        for choice in backbone.choices:
            rule = MODELS[model_name].backbone_rule(choice)
            if rule:
                key = "fixed.backbone" if "backbone" in space.fixed else "params.backbone"
                raise check.fail(key, f"{rule} (model {model_name!r} can take it here)")
