"""Landmark heatmap models behind a name -> entry registry that imports no torch.

The driver checks a space's ``model`` and ``backbone`` against ``MODELS`` without importing
torch; ``create_model`` imports the architecture's module on first use. Every model maps a
(B, 1, H, W) greyscale batch to (B, K, H/s, W/s) heatmaps, ``s = model.stride`` =
``cfg.heatmap_stride`` (4, 2 or 1: below 4 an upsampling head, ``common.UpsampleHead``). Models with
intermediate supervision (hourglass) return, in training mode, a list of heatmaps per stack, the
last being the final prediction.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainables.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    """A model's name, its backbones and the module whose ``build(cfg, K)`` creates it."""

    name: str
    module: str  # trainables.models.<module>, imported on first use (torch, timm)
    backbones: tuple[str, ...] = ()  # the tested backbones; () = takes no backbone
    default: str | None = None  # the backbone when the config leaves it null
    open_ended: bool = False  # also any timm model that builds as a feature extractor

    def backbone_rule(self, backbone: str | None) -> str | None:
        """The rule ``backbone`` breaks for this model, or None. An open-ended model accepts any
        other name here; whether timm builds it is only known when the model is built."""
        if backbone is None:
            return None
        if not self.backbones:
            return (
                f"must be null for {self.name} (it takes no backbone), got {backbone!r}; "
                "leave it unset"
            )
        if backbone in self.backbones or self.open_ended:
            return None
        return f"must be one of {', '.join(self.backbones)} for {self.name}, got {backbone!r}"


HRNET = ("hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w18", "hrnet_w32", "hrnet_w48")
RESNETS = ("resnet18", "resnet34", "resnet50")
MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry("hourglass", "hourglass"),
        ModelEntry("hrnet", "hrnet", HRNET, "hrnet_w18"),
        ModelEntry("resnet", "resnet", RESNETS, "resnet50"),
        ModelEntry("unet", "unet", RESNETS, "resnet34", open_ended=True),
    )
}


def get_model(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def create_model(cfg: Any, num_landmarks: int) -> nn.Module:
    """The model named by ``cfg.model``; an unknown name lists the known ones."""
    entry = get_model(cfg.model)
    module = importlib.import_module(f"trainables.models.{entry.module}")
    return module.build(cfg, num_landmarks)


__all__ = ["MODELS", "ModelEntry", "create_model", "get_model"]
