"""ResNet + SimpleBaseline (Xiao et al., 2018): three deconvolutions from stride 32 to 4."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainables.models import MODELS
from trainables.models.common import (
    heatmap_layer,
    init_weights,
    last_conv,
    timm_encoder,
    to_heatmaps,
)

ENTRY = MODELS["resnet"]


class SimpleBaseline(nn.Module):
    """Stride-32 encoder feature, 3 x [4x4 deconv stride 2, BN, ReLU], 1x1 conv to K maps (or
    an upsampling head to stride 2 or 1)."""

    def __init__(
        self, encoder: nn.Module, num_landmarks: int, stride: int = 4, channels: int = 256
    ) -> None:
        super().__init__()
        self.stride = stride
        self.backbone = encoder
        layers: list[nn.Module] = []
        cin = encoder.feature_info.channels()[-1]
        for _ in range(3):
            layers += [
                nn.ConvTranspose2d(cin, channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            cin = channels
        layers.append(heatmap_layer(channels, num_landmarks, stride))
        self.head = nn.Sequential(*layers)
        init_weights(self.head, last_conv(self.head[-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_heatmaps(self.head[-1], self.head[:-1](self.backbone(x)[-1]), x)


def build(cfg: Any, num_landmarks: int) -> SimpleBaseline:
    """``cfg.backbone`` in ``ENTRY.backbones`` (None = resnet50)."""
    name = ENTRY.default if cfg.backbone is None else cfg.backbone
    # Index 4 of a timm ResNet is the output of layer4, stride 32.
    encoder = timm_encoder("resnet", name, cfg, ENTRY.backbones, out_indices=(4,))
    return SimpleBaseline(encoder, num_landmarks, cfg.heatmap_stride)
