"""Gaussian heatmap targets and sub-pixel decoding.

Coordinates use the pixel-centre convention: pixel ``i`` covers ``[i - 0.5, i + 0.5)``. A point
``u`` in input pixels is ``h = (u + 0.5) / stride - 0.5`` in heatmap pixels.
"""

from __future__ import annotations

import torch

from trainables import shape


def adaptive_sigma(image_size: int | str, stride: int = 4) -> float:
    """The guides' sigma in heatmap pixels: 0.75 at 128 px, 1.5 at 256 px, 3.0 at 512 px (the
    input's long side, stride 4; ``trainables.shape.adaptive_sigma``)."""
    return shape.adaptive_sigma(image_size, stride)


def to_heatmap(coords: torch.Tensor, stride: int) -> torch.Tensor:
    return (coords + 0.5) / stride - 0.5


def from_heatmap(coords: torch.Tensor, stride: int) -> torch.Tensor:
    return (coords + 0.5) * stride - 0.5


def encode(coords: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """Gaussian targets (B, K, H, W) peaking at 1 on ``coords`` (B, K, 2) in heatmap pixels.

    A missing landmark (NaN coordinate) gets an all-zero target.
    """
    xs = torch.arange(width, dtype=torch.float32, device=coords.device)
    ys = torch.arange(height, dtype=torch.float32, device=coords.device)
    cx = coords[..., 0:1].unsqueeze(-1)  # (B, K, 1, 1)
    cy = coords[..., 1:2].unsqueeze(-1)
    d2 = (xs.view(1, 1, 1, -1) - cx) ** 2 + (ys.view(1, 1, -1, 1) - cy) ** 2
    target = torch.exp(-d2 / (2.0 * sigma**2))
    return torch.nan_to_num(target, nan=0.0)


def decode(heatmaps: torch.Tensor) -> torch.Tensor:
    """Sub-pixel peak positions (B, K, 2) in heatmap pixels.

    Argmax, then one Newton step on the log-heatmap (DARK, Zhang et al. 2020): exact for a
    Gaussian peak. Where the local log-surface is not a maximum (flat or noisy output), fall back
    to the quarter-pixel shift toward the larger neighbour.
    """
    b, k, h, w = heatmaps.shape
    hm = heatmaps.detach().float()
    flat = hm.reshape(b, k, -1).argmax(dim=-1)
    x = (flat % w).long()
    y = (flat // w).long()
    logh = torch.log(hm.clamp(min=1e-10))
    padded = torch.nn.functional.pad(logh, (1, 1, 1, 1), mode="replicate")

    def at(dx: int, dy: int) -> torch.Tensor:
        idx = ((y + 1 + dy) * (w + 2) + (x + 1 + dx)).unsqueeze(-1)
        return padded.reshape(b, k, -1).gather(-1, idx).squeeze(-1)

    c = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = at(1, 0) - 2 * c + at(-1, 0)
    hyy = at(0, 1) - 2 * c + at(0, -1)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    ok = (hxx < 0) & (det > 1e-12)
    safe_det = torch.where(ok, det, torch.ones_like(det))
    ox = -(hyy * gx - hxy * gy) / safe_det
    oy = -(hxx * gy - hxy * gx) / safe_det
    ok = ok & (ox.abs() <= 1) & (oy.abs() <= 1)

    def neighbour(dx: int, dy: int) -> torch.Tensor:
        idx = ((y + 1 + dy) * (w + 2) + (x + 1 + dx)).unsqueeze(-1)
        raw = torch.nn.functional.pad(hm, (1, 1, 1, 1), mode="replicate")
        return raw.reshape(b, k, -1).gather(-1, idx).squeeze(-1)

    qx = 0.25 * torch.sign(neighbour(1, 0) - neighbour(-1, 0))
    qy = 0.25 * torch.sign(neighbour(0, 1) - neighbour(0, -1))
    ox = torch.where(ok, ox, qx)
    oy = torch.where(ok, oy, qy)
    return torch.stack([x.float() + ox, y.float() + oy], dim=-1)
