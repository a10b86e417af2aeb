"""HRNet: timm's four high-resolution branches + the HRNetV2 landmark head."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables.models import MODELS
from trainables.models.common import (
    heatmap_layer,
    init_weights,
    last_conv,
    timm_encoder,
    to_heatmaps,
)

ENTRY = MODELS["hrnet"]


class HRNetLandmarks(nn.Module):
    """Upsample all branches to stride 4, concat, 1x1 conv + BN + ReLU, 1x1 conv to K maps (or
    an upsampling head to stride 2 or 1)."""

    def __init__(self, encoder: nn.Module, num_landmarks: int, stride: int = 4) -> None:
        super().__init__()
        self.stride = stride
        self.backbone = encoder
        channels = sum(encoder.feature_info.channels())
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            heatmap_layer(channels, num_landmarks, stride),
        )
        init_weights(self.head, last_conv(self.head[-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        size = feats[0].shape[-2:]
        up = [feats[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]
        ]
        return to_heatmaps(self.head[-1], self.head[:-1](torch.cat(up, dim=1)), x)


def build(cfg: Any, num_landmarks: int) -> HRNetLandmarks:
    """``cfg.backbone`` in ``ENTRY.backbones`` (None = hrnet_w18)."""
    name = ENTRY.default if cfg.backbone is None else cfg.backbone
    # feature_location="" gives the raw branches (the default "incre" gives classifier
    # features); index 0 is the stride-2 stem, so 1..4 are the strides 4, 8, 16, 32.
    encoder = timm_encoder(
        "hrnet", name, cfg, ENTRY.backbones, feature_location="", out_indices=(1, 2, 3, 4)
    )
    return HRNetLandmarks(encoder, num_landmarks, cfg.heatmap_stride)
