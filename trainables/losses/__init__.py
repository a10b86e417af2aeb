"""Heatmap losses behind a name -> builder registry that imports no torch.

The driver checks a space's ``loss`` against ``LOSSES`` without importing torch;
``create_loss`` imports ``trainables.losses.heatmap`` on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from trainables.errors import ConfigError

# name -> the builder in trainables.losses.heatmap: builder(cfg) -> loss(pred, target)
LOSSES: dict[str, str] = {
    "adaptive_wing": "build_adaptive_wing",
    "heatmap": "build_mse",
}


def create_loss(cfg: Any) -> Callable:
    """The loss named by ``cfg.loss``; an unknown name lists the known ones."""
    try:
        builder = LOSSES[cfg.loss]
    except KeyError:
        raise ConfigError(
            f"unknown loss {cfg.loss!r}; known: {', '.join(sorted(LOSSES))}"
        ) from None
    return getattr(importlib.import_module("trainables.losses.heatmap"), builder)(cfg)


__all__ = ["LOSSES", "create_loss"]
