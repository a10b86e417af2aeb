"""The rules between trainable settings: a backbone its model can take, pretrained weights only
for a model that has them. ``TrainConfig`` checks them when a config is made; a space checks
every pair of values its trials can get (``search.studyfiles.space_file``), so a space whose
``resnet`` trials could draw an HRNet backbone fails when it loads, not in every such trial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainables.models import MODELS


@dataclass(frozen=True)
class KeyRule:
    """A rule between two settings: ``key``'s value must suit ``on``'s (a backbone its model).
    ``check(on_value, key_value)`` is the broken rule, or None."""

    key: str
    on: str
    check: Callable[[Any, Any], str | None]


def _backbone(model: str, backbone: str | None) -> str | None:
    return MODELS[model].backbone_rule(backbone)


def _pretrained(model: str, pretrained: bool) -> str | None:
    if pretrained and not MODELS[model].backbones:
        return f"must be false for {model} (it has no pretrained weights), got true"
    return None


KEY_RULES = (KeyRule("backbone", "model", _backbone), KeyRule("pretrained", "model", _pretrained))
