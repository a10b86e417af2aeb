"""The trainable's configuration: every key a search space may set, with its type and default."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from trainables.errors import ConfigError


@dataclass
class TrainConfig:
    """One trial's resolved settings. Defaults follow the guides' "balanced" configuration."""

    data_dir: str = ""
    annotator: str = "mean"
    model: str = "hrnet"
    backbone: str = "hrnet_w18_small_v2"
    pretrained: bool = False
    loss: str = "adaptive_wing"
    aw_omega: float = 14.0
    aw_theta: float = 0.5
    aw_epsilon: float = 1.0
    aw_alpha: float = 2.1
    aw_weight: float = 10.0
    aw_weight_map: bool = True
    lr: float = 5e-4
    weight_decay: float = 1e-4
    batch_size: int = 12
    epochs: int = 100
    warmup_epochs: int = 5
    eta_min: float = 1e-6
    image_size: int = 256
    sigma: float | None = None  # heatmap pixels; None = the guides' adaptive sigma
    num_threads: int = 1
    seed: int = 0

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build and validate; unknown keys and wrong types raise ``ConfigError``."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"{where}: unknown trainable key {unknown[0]!r}; known: {', '.join(known)}"
            )
        kwargs = {
            name: coerce(where, name, value, known[name].type) for name, value in values.items()
        }
        cfg = cls(**kwargs)
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "config") -> None:
        positive = {
            "lr": self.lr,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "image_size": self.image_size,
            "num_threads": self.num_threads,
            "aw_epsilon": self.aw_epsilon,
            "aw_theta": self.aw_theta,
        }
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{where}: {key} must be > 0, got {value}")
        if self.sigma is not None and not self.sigma > 0:
            raise ConfigError(f"{where}: sigma must be > 0, got {self.sigma}")
        if self.warmup_epochs < 0 or self.eta_min < 0 or self.weight_decay < 0:
            raise ConfigError(f"{where}: warmup_epochs, eta_min and weight_decay must be >= 0")
        if self.image_size % 32:
            raise ConfigError(
                f"{where}: image_size must be a multiple of 32, got {self.image_size}"
            )
        if self.annotator not in ("senior", "junior", "mean"):
            raise ConfigError(
                f"{where}: annotator must be senior, junior or mean, got {self.annotator!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_type(name: str) -> str:
    return {f.name: f.type for f in dataclasses.fields(TrainConfig)}[name]


def coerce(where: str, key: str, value: Any, type_name: str) -> Any:
    """Check ``value`` against a dataclass field's type annotation; ints pass as floats."""
    optional = type_name.endswith("| None")
    base = type_name.split("|")[0].strip()
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: {key} must be a {base}, got null")
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }[base]
    if not ok:
        hint = ""
        if isinstance(value, str) and base in ("int", "float"):
            hint = " (a string: YAML reads 1e-4 as text, write 1.0e-4)"
        raise ConfigError(f"{where}: {key} must be a {base}, got {value!r}{hint}")
    if base == "float":
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be finite, got {value}")
    return value
