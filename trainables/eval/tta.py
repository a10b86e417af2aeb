"""Test-time augmentation: the same images under a few small affine transforms (scales about
the centre, shifts, and a mirror for models trained with ``aug_flip``), each prediction mapped
back through its transform's inverse to original-image pixels, and the mean taken there.

Transforms are 3x3 matrices from input pixels to transformed input pixels, in the pixel-centre
convention of ``trainables.data.augment``; ``warp`` applies one to a batch on its device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from trainables.data.augment import flip_matrix


@dataclass(frozen=True)
class TTA:
    """Which transforms to average: every scale and every shift, each also mirrored when
    ``flip``. The identity is always one of them."""

    scales: tuple[float, ...] = (0.95, 1.05)  # about the image centre
    shifts: tuple[tuple[float, float], ...] = ((3.0, 3.0), (-3.0, -3.0))  # input pixels
    flip: bool = False  # only for a model trained with aug_flip (it has seen mirrored images)

    def matrices(self, width: int, height: int) -> list[np.ndarray]:
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        base = [np.eye(3)]
        for s in self.scales:
            base.append(np.array([[s, 0, cx - s * cx], [0, s, cy - s * cy], [0, 0, 1.0]]))
        for dx, dy in self.shifts:
            base.append(np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]]))
        if self.flip:
            base += [flip_matrix(width) @ m for m in base]
        return base

    def describe(self) -> str:
        shifts = " ".join(f"({dx:g},{dy:g})" for dx, dy in self.shifts)
        flip = ", mirrored" if self.flip else ""
        return f"identity, scales {list(self.scales)}, shifts {shifts} px{flip}"


def warp(images: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """A (B, C, H, W) batch transformed by ``matrix`` (bilinear, zeros outside), on its device."""
    if np.array_equal(matrix, np.eye(3)):
        return images
    h, w = images.shape[-2:]
    to_unit = np.array([[2 / w, 0.0, 1 / w - 1], [0.0, 2 / h, 1 / h - 1], [0.0, 0.0, 1.0]])
    to_pixels = np.array([[w / 2, 0.0, (w - 1) / 2], [0.0, h / 2, (h - 1) / 2], [0.0, 0.0, 1.0]])
    theta = torch.from_numpy(to_unit @ np.linalg.inv(matrix) @ to_pixels)[:2].float()
    theta = theta.to(images.device)[None].expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", align_corners=False)
    return out.to(images.dtype)


def unwarp_points(xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(..., 2) points in the transformed input mapped back to the input (``matrix``'s inverse)."""
    inv = np.linalg.inv(matrix)
    return xy @ inv[:2, :2].T + inv[:2, 2]


__all__ = ["TTA", "unwarp_points", "warp"]
