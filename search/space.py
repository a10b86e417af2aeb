"""Search spaces: YAML -> validated ``Space`` -> Optuna define-by-run suggestions.

Schema (``spaces/*.yaml``)::

    params:                       # searched: each name is a trainable config key
      lr: {type: float, low: 1.0e-4, high: 5.0e-4, log: true}
      batch_size: {type: int, low: 8, high: 32, step: 4}
      image_size: {type: categorical, choices: [128, 256, 512]}
    fixed:                        # constant trainable settings for every trial
      backbone: hrnet_w18
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from search.schema import Checker, load_mapping
from trainables.config import TrainConfig, coerce, field_type

# Keys the study sets for every trial: a space may neither search nor fix them.
STUDY_KEYS = frozenset(
    {"data_dir", "dataset_format", "cache_dir", "annotator", "epochs", "num_threads", "seed"}
)
PARAM_KEYS = {
    "float": ("type", "low", "high", "log", "step"),
    "int": ("type", "low", "high", "log", "step"),
    "categorical": ("type", "choices"),
}


@dataclass(frozen=True)
class Param:
    """One searched parameter, ready to become an Optuna suggestion."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(
                self.name, self.low, self.high, log=self.log, step=self.step or 1
            )
        return trial.suggest_categorical(self.name, list(self.choices))


@dataclass(frozen=True)
class Space:
    """Validated search space: searched parameters and fixed trainable settings."""

    path: str
    params: tuple[Param, ...]
    fixed: dict[str, Any] = field(default_factory=dict)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Define-by-run: sample every parameter on ``trial``; return the fixed settings."""
        for p in self.params:
            p.suggest(trial)
        return dict(self.fixed)


def load_space(path: Path | str) -> Space:
    """Load and validate a space file; every error names the file and the key."""
    path = Path(path)
    raw = load_mapping(path)
    check = Checker(path)
    check.keys(raw, ("params", "fixed"), required=("params",))
    params_raw = check.mapping(raw["params"], "params")
    if not params_raw:
        raise check.fail("params", "must name at least one parameter to search")
    fixed_raw = check.mapping(raw.get("fixed") or {}, "fixed")
    params = tuple(_param(check, name, spec) for name, spec in params_raw.items())
    fixed = {
        name: _trainable_value(check, f"fixed.{name}", name, value)
        for name, value in fixed_raw.items()
    }
    both = sorted(set(fixed) & set(params_raw))
    if both:
        raise check.fail(f"fixed.{both[0]}", "is also searched in params; keep one")
    return Space(str(path), params, fixed)


def _trainable_key(check: Checker, key: str, name: str) -> None:
    known = [k for k in TrainConfig.keys() if k not in STUDY_KEYS]
    if name in STUDY_KEYS:
        raise check.fail(key, "is set by the study file, not the space")
    if name not in known:
        check.keys({name: None}, known, prefix=key[: -len(name)])


def _trainable_value(check: Checker, key: str, name: str, value: Any) -> Any:
    _trainable_key(check, key, name)
    return coerce(str(check.path), key, value, field_type(name))


def _param(check: Checker, name: str, spec: Any) -> Param:
    key = f"params.{name}"
    _trainable_key(check, key, name)
    spec = check.mapping(spec, key)
    kind = check.string(spec.get("type"), f"{key}.type", PARAM_KEYS)
    check.keys(spec, PARAM_KEYS[kind], prefix=f"{key}.")
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
    return Param(name, kind, low, high, log, step)
