"""Landmark heatmap models behind a name -> factory registry.

Every model maps a (B, 1, S, S) greyscale batch to (B, K, S/4, S/4) heatmaps and has
``stride == 4``. Models with intermediate supervision (hourglass) return, in training mode, a
list of heatmaps per stack, the last being the final prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from trainables.errors import ConfigError
from trainables.models import hourglass, hrnet, resnet, unet

MODELS: dict[str, Callable[[Any, int], nn.Module]] = {
    "hourglass": hourglass.build,
    "hrnet": hrnet.build,
    "resnet": resnet.build,
    "unet": unet.build,
}


def create_model(cfg: Any, num_landmarks: int) -> nn.Module:
    """The model named by ``cfg.model``; an unknown name lists the known ones."""
    try:
        factory = MODELS[cfg.model]
    except KeyError:
        raise ConfigError(
            f"unknown model {cfg.model!r}; known: {', '.join(sorted(MODELS))}"
        ) from None
    return factory(cfg, num_landmarks)


__all__ = ["MODELS", "create_model"]
