"""Space files (``spaces/*.yaml``): YAML -> a checked ``Space`` with its warm-start points.

The file's schema (``search.studyfiles.space_schema``) checks its shape. Then every parameter
must name a trainable config key that the study does not set itself; every value a range or a
list can produce, and every fixed value, must pass that setting's declaration
(``trainables.setting``); every pair of values a trial can get must keep the rules between
settings (``trainables.key_rules``: a backbone its model can take). A broken rule is one
``ConfigError`` line naming the file and the key.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from search.studyfiles.conditions import UNKNOWN, parse_when
from search.studyfiles.space import SKIP, Case, Param, Space, Step, walk
from search.studyfiles.space_schema import CategoricalParam, SpaceFile
from search.studyfiles.trial_keys import STUDY_SET_KEYS
from search.studyfiles.warmstart import load_warm_start
from search.studyfiles.yamlfile import load_mapping
from trainables.config import DEFAULTS, TrainConfig
from trainables.key_rules import KEY_RULES, KeyRule
from trainables.schema import fail, unknown_key, validated
from trainables.setting import kind, rule, setting

# An int range is checked value by value (image_size must be a multiple of 32) up to this size;
# the trainable's other rules are bounds, which low and high decide.
MAX_CHECKED_VALUES = 10_000


def load_space(path: Path | str) -> Space:
    """Load and check a space file; every error names the file and the key."""
    path = Path(path)
    where = str(path)
    file = validated(SpaceFile, load_mapping(path), where)
    fixed = {
        name: _value(where, f"fixed.{name}", name, value)
        for name, value in (file.fixed or {}).items()
    }
    both = sorted(set(fixed) & set(file.params))
    if both:
        raise fail(where, f"fixed.{both[0]}", "is also searched in params; keep one")
    order = list(file.params)
    earlier: dict[str, Param] = {}
    for name, spec in file.params.items():
        earlier[name] = _param(where, name, spec, earlier, order, fixed)
    space = Space(where, tuple(earlier.values()), fixed)
    _check_key_rules(where, space)
    return replace(space, warm_start=load_warm_start(where, file.warm_start, space))


def _trainable_key(where: str, key: str, name: str) -> None:
    if name in STUDY_SET_KEYS:
        raise fail(where, key, "is set by the study file, not the space")
    if name not in TrainConfig.model_fields:
        raise unknown_key(where, key, [k for k in TrainConfig.keys() if k not in STUDY_SET_KEYS])


def _value(where: str, key: str, name: str, value: Any) -> Any:
    """``value`` as trainable setting ``name`` (its type and rule: ``lr`` > 0, a known ``loss``,
    ...), so a bad value fails the file rather than every trial."""
    _trainable_key(where, key, name)
    return setting(name, value, where, key)


def _param(
    where: str,
    name: str,
    spec: Any,
    earlier: dict[str, Param],
    order: list[str],
    fixed: dict[str, Any],
) -> Param:
    key = f"params.{name}"
    _trainable_key(where, key, name)
    base = _distribution(where, key, name, spec, None)
    when = ()
    if spec.when is not None:
        when = parse_when(where, f"{key}.when", spec.when, name, earlier, order, fixed)
    parsed = []
    for i, case in enumerate(spec.cases or ()):
        ckey = f"{key}.cases[{i}]"
        case_when = parse_when(where, f"{ckey}.when", case.when, name, earlier, order, fixed)
        param = _distribution(where, ckey, name, spec, case)
        if param.choices != base.choices:
            raise fail(
                where,
                f"{ckey}.choices",
                f"must match {key}.choices: Optuna cannot change a categorical's choices "
                "between trials (use when: to leave the parameter out instead)",
            )
        parsed.append(Case(case_when, param))
    return replace(base, when=when, cases=tuple(parsed))


def _distribution(where: str, key: str, name: str, spec: Any, case: Any) -> Param:
    """The base distribution of ``spec``, or its ``case``'s, checked value by value."""
    if isinstance(spec, CategoricalParam):
        choices = (case or spec).choices
        values = [_value(where, f"{key}.choices", name, c) for c in choices]
        if len(set(map(repr, values))) != len(values):
            raise fail(where, f"{key}.choices", f"has duplicates: {choices}")
        return Param(name, "categorical", choices=tuple(values))
    fits = kind(name)
    if fits not in ("int", "float") or (spec.type == "float" and fits == "int"):
        raise fail(where, f"{key}.type", f"{spec.type} does not fit {name}, which is a {fits}")
    low, high, log, step = spec.bounds(case)
    for bound, value in (("low", low), ("high", high)):
        setting(name, value, where, f"{key}.{bound}")
    if spec.type == "int" and (high - low) // (step or 1) < MAX_CHECKED_VALUES:
        for value in range(low, high + 1, step or 1):
            broken = rule(name, value)
            if broken:
                raise fail(where, key, f"can sample {value}, but {name} {broken}")
    return Param(name, spec.type, low, high, log, step)


def _check_key_rules(where: str, space: Space) -> None:
    """Every pair of values a trial can get keeps the rules between settings
    (``backbone: hrnet_w99`` fails the file, not every trial). A setting that is neither
    searched nor fixed is the trainable's default."""
    for key_rule in KEY_RULES:
        for on in _values(space, key_rule.on):
            for value in _reachable(space, key_rule, on):
                broken = key_rule.check(on, value)
                if broken:
                    section = "fixed" if key_rule.key in space.fixed else "params"
                    raise fail(
                        where,
                        f"{section}.{key_rule.key}",
                        f"{broken} ({key_rule.on} {on!r} can take it here)",
                    )


def _values(space: Space, name: str) -> tuple[Any, ...]:
    """The values a trial can give setting ``name``: fixed, a categorical's choices, or the
    default; none of a range (the rules between settings are about names)."""
    if name in space.fixed:
        return (space.fixed[name],)
    param = next((p for p in space.params if p.name == name), None)
    if param is None:
        return (DEFAULTS[name],)
    return param.choices if param.kind == "categorical" else ()


def _reachable(space: Space, key_rule: KeyRule, on: Any) -> tuple[Any, ...]:
    """The values ``key_rule.key`` can take in a trial whose ``key_rule.on`` is ``on``."""
    if key_rule.key in space.fixed or all(p.name != key_rule.key for p in space.params):
        return _values(space, key_rule.key)
    sampled = []

    def choose(step: Step) -> Any:
        if step.param.name == key_rule.key and step.active is not False:
            sampled.append(step.param)
        if step.active is False:
            return SKIP
        return on if step.param.name == key_rule.on else UNKNOWN

    walk(space.params, choose)
    return tuple(v for p in sampled for v in _values(space, p.name))


def pretrained_backbones(space: Space) -> tuple[dict[str, Any], ...]:
    """Each model and backbone a trial can draw with ``pretrained: true`` (with the space's
    ``pretrained_file``): the weights a study fetches on every node before it starts."""
    backbone, pretrained = (next(r for r in KEY_RULES if r.key == k) for k in KEYS_OF_WEIGHTS)
    found: dict[tuple, dict[str, Any]] = {}
    for model in _values(space, "model"):
        if True not in _reachable(space, pretrained, model):
            continue
        for name in _reachable(space, backbone, model) or (DEFAULTS["backbone"],):
            for weights_file in _values(space, "pretrained_file") or (None,):
                values = {"model": model, "backbone": name, "pretrained": True}
                found[(model, name, weights_file)] = {**values, "pretrained_file": weights_file}
    return tuple(found.values())


KEYS_OF_WEIGHTS = ("backbone", "pretrained")  # the rules on model that decide the weights


def memory_configs(space: Space) -> tuple[dict[str, Any], ...]:
    """The settings of each model, backbone and image size a trial can draw, with the largest
    batch it can draw with them and the space's fixed settings: what the memory check before a
    start estimates. The other searched settings a trial's memory grows with are at their
    hungriest: the finest heatmap (``heatmap_stride``; 1 upsamples to the input) and, for the
    hourglass, the most stacks; the rest at their trainable defaults."""
    backbone = next(r for r in KEY_RULES if r.key == "backbone")
    batch = next((p for p in space.params if p.name == "batch_size"), None)
    stride = min(_values(space, "heatmap_stride") or (DEFAULTS["heatmap_stride"],))
    stacks = int(space.largest("hourglass_stacks", DEFAULTS["hourglass_stacks"]))
    found = []
    for model in _values(space, "model"):
        for name in _reachable(space, backbone, model) or (DEFAULTS["backbone"],):
            for size in _values(space, "image_size") or (space.largest("image_size", 0),):
                values = {"model": model, "backbone": name, "image_size": size}
                values["heatmap_stride"] = stride
                if model == "hourglass":
                    values["hourglass_stacks"] = stacks
                found.append(
                    {**space.fixed, **values, "batch_size": _largest(space, batch, values)}
                )
    return tuple(found)


def _largest(space: Space, batch: Param | None, values: dict[str, Any]) -> int:
    """The largest batch a trial with ``values`` can draw: its case's range where the case is
    decided by them, else the largest of any."""
    picked = batch.pick(values) if batch is not None and batch.active(values) is not False else None
    if picked is None:
        return int(space.largest("batch_size", DEFAULTS["batch_size"]))
    dist = picked[0]
    return int(max(dist.choices) if dist.kind == "categorical" else dist.high)
