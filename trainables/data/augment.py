"""Training-time augmentation: one random affine warp for image and landmarks, then intensity.

A sample's draws (``draw``: the warp and the three intensity factors) are made where the sample
is loaded, from the generator ``LandmarkDataset`` seeds by (seed, epoch, index), and its
landmarks are warped there (a few points). The image travels as uint8 with its draws, and
``apply`` warps and jitters the whole batch where the step runs: on the GPU (``grid_sample``,
as test-time augmentation does), so a DataLoader worker only reads bytes and draws numbers,
whatever the image size. On a CPU the same ``apply`` runs in the training process: the same
samples, the same distribution. ``augment`` is one sample through both halves.

Coordinates use the pixel-centre convention (pixel ``i`` covers ``[i - 0.5, i + 0.5)``), the same
as ``trainables.data.letterbox`` and ``trainables.eval.heatmap``, so a landmark keeps its place
on the anatomy under the warp. The optional horizontal flip mirrors x only: every landmark is on
the midline or the mean of a bilateral pair, so no two landmarks swap names under a mirror.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from trainables.errors import ConfigError

if TYPE_CHECKING:
    from trainables.config import TrainConfig


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths; 0 disables a component and all zeros is the identity."""

    rotation_deg: float = 0.0  # angle ~ U(-r, r)
    scale: float = 0.0  # factor ~ U(1 - s, 1 + s)
    translate: float = 0.0  # shift ~ U(-t, t) x image size, per axis
    brightness: float = 0.0  # intensity x U(1 - b, 1 + b)
    contrast: float = 0.0  # (x - mean) x U(1 - c, 1 + c) + mean
    gamma: float = 0.0  # x ** exp(U(-g, g)): always a positive exponent
    flip: bool = False  # mirror x with probability 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"augmentation: {f.name} must be >= 0, got {value}")
        for name in ("scale", "brightness", "contrast"):
            if getattr(self, name) >= 1:
                raise ConfigError(f"augmentation: {name} must be < 1, got {getattr(self, name)}")


def augment_config(cfg: TrainConfig) -> AugmentConfig | None:
    """The trainable's ``aug_*`` settings; None when ``cfg.augment`` is off."""
    if not cfg.augment:
        return None
    return AugmentConfig(
        rotation_deg=cfg.aug_rotation_deg,
        scale=cfg.aug_scale,
        translate=cfg.aug_translate,
        brightness=cfg.aug_brightness,
        contrast=cfg.aug_contrast,
        gamma=cfg.aug_gamma,
        flip=cfg.aug_flip,
    )


def random_affine(
    cfg: AugmentConfig, size: int | tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """3x3 matrix mapping input pixels to output pixels of an image ``size`` (N or (W, H)):
    rotate and scale about the centre, then translate (a fraction of each side), then mirror x
    when ``cfg.flip`` draws it."""
    w, h = (size, size) if isinstance(size, int) else size
    angle = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    scale = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
    shift = rng.uniform(-cfg.translate, cfg.translate, size=2) * (w, h)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0  # the image centre in pixel-centre coordinates
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    matrix = np.array(
        [
            [cos, -sin, cx - cos * cx + sin * cy + shift[0]],
            [sin, cos, cy - sin * cx - cos * cy + shift[1]],
            [0.0, 0.0, 1.0],
        ]
    )
    # Drawn last and only when enabled: the other draws keep their stream.
    if cfg.flip and rng.random() < 0.5:
        matrix = flip_matrix(w) @ matrix
    return matrix


def flip_matrix(width: int) -> np.ndarray:
    """Mirror x in pixel-centre coordinates: ``x -> width - 1 - x``."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def warp_points(xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 3x3 affine ``matrix`` to (..., 2) points; NaN (missing) stays NaN."""
    xy = np.asarray(xy, dtype=np.float64)
    return xy @ matrix[:2, :2].T + matrix[:2, 2]


# A sample's draws as one float32 row: the warp as ``grid_sample``'s 2 x 3 theta (flattened),
# then gamma, contrast and brightness.
DRAWS = 9
IDENTITY_THETA = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=np.float32)


def unit_theta(matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """``matrix`` (input to output pixels) as the (2, 3) theta ``affine_grid`` takes: each output
    location's source, in the unit coordinates of ``align_corners=False``, where pixel ``i`` of
    ``n`` sits at ``(2 i + 1) / n - 1``. So the warp keeps the pixel-centre convention."""
    w, h = width, height
    to_unit = np.array([[2 / w, 0.0, 1 / w - 1], [0.0, 2 / h, 1 / h - 1], [0.0, 0.0, 1.0]])
    to_pixels = np.array([[w / 2, 0.0, (w - 1) / 2], [0.0, h / 2, (h - 1) / 2], [0.0, 0.0, 1.0]])
    return (to_unit @ np.linalg.inv(matrix) @ to_pixels)[:2].astype(np.float32)


def warp_batch(images: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    """Bilinear warp of a (B, C, H, W) batch, each image by its (2, 3) theta (``unit_theta``),
    on the batch's device; every tap outside the image reads 0 (the pad). Keeps the dtype."""
    theta = thetas.to(images.device, torch.float32).reshape(-1, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", align_corners=False)
    return out.to(images.dtype)


def warp_image(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """One float (H, W) image warped by ``matrix`` (``warp_batch`` on a batch of one)."""
    h, w = image.shape
    theta = torch.from_numpy(unit_theta(matrix, w, h))
    source = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return warp_batch(source, theta)[0, 0].numpy()


def draw(
    cfg: AugmentConfig, coords: np.ndarray, size: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One sample's draws (a ``DRAWS`` row) for an image of ``size`` (W, H), and its (K, 2)
    landmarks warped by them (NaN, missing, stays NaN). The warp's draws come first and the
    intensity's after, in a fixed order, so a seed gives the same sample everywhere."""
    matrix = random_affine(cfg, size, rng)
    gamma = math.exp(rng.uniform(-cfg.gamma, cfg.gamma))
    contrast = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    brightness = 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
    coords = np.asarray(coords, dtype=np.float64)
    if np.array_equal(matrix, np.eye(3)):
        theta = IDENTITY_THETA
    else:
        theta = unit_theta(matrix, *size).reshape(-1)
        coords = warp_points(coords, matrix)
    row = np.concatenate([theta, np.array([gamma, contrast, brightness], dtype=np.float32)])
    return row.astype(np.float32), coords.astype(np.float32)


def apply(images: torch.Tensor, draws: torch.Tensor, cfg: AugmentConfig | None) -> torch.Tensor:
    """A batch of letterboxed images (B, 1, H, W; uint8, or float in [0, 1]) as float32 in
    [0, 1], each warped and jittered by its ``draw`` row (``draws``: (B, DRAWS)), on the images'
    device. ``cfg`` None: no augmentation. A step runs only when ``cfg`` has its strength (so
    zero strengths are the identity, bit for bit), decided from ``cfg``, not from the draws:
    nothing is read back from the GPU."""
    out = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if cfg is None:
        return out
    draws = draws.to(out.device, torch.float32, non_blocking=True)
    gamma, contrast, brightness = draws[:, 6:].T[..., None, None, None]
    if cfg.rotation_deg or cfg.scale or cfg.translate or cfg.flip:
        out = warp_batch(out, draws[:, :6]).clamp(0.0, 1.0)
    if cfg.gamma:
        out = out.pow(gamma)
    if cfg.contrast:
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * contrast + mean
    if cfg.brightness:
        out = out * brightness
    return out.clamp(0.0, 1.0)


def augment(
    image: np.ndarray, coords: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One letterboxed image (uint8 or float in [0, 1]) and its (K, 2) landmarks in input
    pixels, randomly warped and jittered: ``draw`` and ``apply`` on a batch of one. Returns a
    float32 image in [0, 1] and float32 coordinates."""
    row, coords = draw(cfg, coords, (image.shape[-1], image.shape[-2]), rng)
    batch = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    return apply(batch, torch.from_numpy(row)[None], cfg)[0, 0].numpy(), coords
