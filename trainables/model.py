"""Landmark heatmap models behind a name -> factory registry."""

from __future__ import annotations

from collections.abc import Callable

import timm
import torch
import torch.nn.functional as F
from torch import nn

from trainables.errors import ConfigError

HRNET_VARIANTS = ("hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w18", "hrnet_w32", "hrnet_w48")


class HRNetLandmarks(nn.Module):
    """timm HRNet branches + HRNetV2 head: upsample all to stride 4, concat, 1x1 conv, K maps."""

    stride = 4

    def __init__(self, variant: str, num_landmarks: int, pretrained: bool = False) -> None:
        super().__init__()
        if variant not in HRNET_VARIANTS:
            raise ConfigError(
                f"unknown hrnet backbone {variant!r}; known: {', '.join(HRNET_VARIANTS)}"
            )
        # feature_location="" gives the raw branches; index 0 is the stride-2 stem.
        self.backbone = timm.create_model(
            variant,
            pretrained=pretrained,
            features_only=True,
            feature_location="",
            out_indices=(1, 2, 3, 4),
            in_chans=1,
        )
        channels = sum(self.backbone.feature_info.channels())
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_landmarks, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        size = feats[0].shape[-2:]
        up = [feats[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]
        ]
        return self.head(torch.cat(up, dim=1))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "hrnet": lambda cfg, k: HRNetLandmarks(cfg.backbone, k, cfg.pretrained),
}


def create_model(cfg, num_landmarks: int) -> nn.Module:
    """The model named by ``cfg.model``; an unknown name lists the known ones."""
    try:
        factory = MODELS[cfg.model]
    except KeyError:
        raise ConfigError(
            f"unknown model {cfg.model!r}; known: {', '.join(sorted(MODELS))}"
        ) from None
    return factory(cfg, num_landmarks)
