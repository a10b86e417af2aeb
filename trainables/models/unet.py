"""U-Net: a timm encoder and a decoder that climbs from stride 32 to 4 over encoder skips."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables.errors import ConfigError
from trainables.models import MODELS
from trainables.models.common import (
    heatmap_layer,
    init_weights,
    last_conv,
    timm_encoder,
    to_heatmaps,
)

ENTRY = MODELS["unet"]
STRIDES = (4, 8, 16, 32)
DECODER_CHANNELS = (256, 128, 64)  # at strides 16, 8, 4


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UpBlock(nn.Module):
    """Upsample x2 to the skip's size, concat the skip, two 3x3 conv + BN + ReLU."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_bn_relu(cin + skip, cout), conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.convs(torch.cat([x, skip], dim=1))


class UNetLandmarks(nn.Module):
    """Encoder features at strides 4/8/16/32; decoder ends at stride 4 with a 1x1 conv to K (or
    an upsampling head to stride 2 or 1)."""

    def __init__(self, encoder: nn.Module, num_landmarks: int, name: str, stride: int = 4) -> None:
        super().__init__()
        self.stride = stride
        self.backbone = encoder
        reductions = encoder.feature_info.reduction()
        channels = encoder.feature_info.channels()
        missing = [s for s in STRIDES if s not in reductions]
        if missing:
            raise ConfigError(
                f"unet backbone {name!r} has no features at stride "
                f"{', '.join(map(str, missing))} (it gives strides {reductions}); "
                f"known: {', '.join(ENTRY.backbones)}"
            )
        # The deepest feature at each stride; timm lists features shallow to deep.
        self.indices = [max(i for i, r in enumerate(reductions) if r == s) for s in STRIDES]
        c4, c8, c16, c32 = (channels[i] for i in self.indices)
        d16, d8, d4 = DECODER_CHANNELS
        self.up = nn.ModuleList([UpBlock(c32, c16, d16), UpBlock(d16, c8, d8), UpBlock(d8, c4, d4)])
        self.heatmaps = heatmap_layer(d4, num_landmarks, stride)
        decoder = nn.ModuleList([self.up, self.heatmaps])
        init_weights(decoder, last_conv(self.heatmaps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        s4, s8, s16, y = (feats[i] for i in self.indices)
        for block, skip in zip(self.up, (s16, s8, s4), strict=True):
            y = block(y, skip)
        return to_heatmaps(self.heatmaps, y, x)


def build(cfg: Any, num_landmarks: int) -> UNetLandmarks:
    """``cfg.backbone`` in ``ENTRY.backbones`` or any timm model with features_only (None:
    ``ENTRY.default``)."""
    name = ENTRY.default if cfg.backbone is None else cfg.backbone
    encoder = timm_encoder("unet", name, cfg, ENTRY.backbones, open_ended=True)
    return UNetLandmarks(encoder, num_landmarks, name, cfg.heatmap_stride)
