"""Stacked hourglass (Newell, Yang, Deng, ECCV 2016) with intermediate supervision.

timm has no hourglass, so it is written here; there are no pretrained weights.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables.models.common import heatmap_layer, init_weights, last_conv, to_heatmaps

# Newell et al. pool four times below stride 4 (to stride 64); three keeps the coarsest level at
# stride 32 like the timm encoders, so every image_size that is a multiple of 32 halves exactly.
DEPTH = 3
CHANNELS = 256


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1, plus the skip."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, mid, kernel_size=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, kernel_size=1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    """Pool, recurse ``depth`` levels down, upsample; a residual skip at every resolution."""

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.skip = Residual(channels, channels)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.up = Residual(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.skip(x) + F.interpolate(low, size=x.shape[-2:], mode="nearest")


class Stack(nn.Module):
    """One hourglass, its features and heatmaps; ``remap`` feeds both into the next stack."""

    def __init__(self, channels: int, num_landmarks: int, last: bool, stride: int = 4) -> None:
        super().__init__()
        self.hourglass = Hourglass(DEPTH, channels)
        self.features = nn.Sequential(
            Residual(channels, channels),
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        # Only the last stack's heatmaps are at the configured stride: the others feed back
        # into the next stack at stride 4.
        self.heatmaps = heatmap_layer(channels, num_landmarks, stride if last else 4)
        # The last stack has nothing to feed; unused layers would get no gradient.
        self.remap_features = None if last else nn.Conv2d(channels, channels, kernel_size=1)
        self.remap_heatmaps = None if last else nn.Conv2d(num_landmarks, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(self.hourglass(x))
        heatmaps = to_heatmaps(self.heatmaps, features, image)
        if self.remap_features is not None:
            x = x + self.remap_features(features) + self.remap_heatmaps(heatmaps)
        return x, heatmaps


class StackedHourglass(nn.Module):
    """Stem to stride 4, then ``stacks`` hourglasses.

    In training mode ``forward`` returns every stack's heatmaps (the last is the final
    prediction) for intermediate supervision; in eval mode only the final heatmaps. At a
    ``stride`` below 4 the earlier stacks' heatmaps are upsampled (bilinear) to the final size.
    """

    def __init__(
        self, num_landmarks: int, stacks: int = 2, channels: int = CHANNELS, stride: int = 4
    ) -> None:
        super().__init__()
        self.stride = stride
        self.stem = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            Residual(64, 128),
            nn.MaxPool2d(2),
            Residual(128, 128),
            Residual(128, channels),
        )
        self.stacks = nn.ModuleList(
            Stack(channels, num_landmarks, last=i == stacks - 1, stride=stride)
            for i in range(stacks)
        )
        # Nothing is pretrained, so the whole network gets the head initialisation.
        init_weights(self, *(last_conv(stack.heatmaps) for stack in self.stacks))

    def forward(self, image: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x = self.stem(image)
        outputs = []
        for stack in self.stacks:
            x, heatmaps = stack(x, image)
            outputs.append(heatmaps)
        if not self.training:
            return outputs[-1]
        size = outputs[-1].shape[-2:]
        return [
            out
            if out.shape[-2:] == size
            else F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            for out in outputs
        ]


def build(cfg: Any, num_landmarks: int) -> StackedHourglass:
    """``cfg.hourglass_stacks`` stacks. The config's declarations refuse a backbone, pretrained
    weights and fewer than one stack (``trainables.config``)."""
    return StackedHourglass(num_landmarks, cfg.hourglass_stacks, stride=cfg.heatmap_stride)
