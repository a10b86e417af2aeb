"""Training-time augmentation: one random affine warp for image and landmarks, then intensity.

Coordinates use the pixel-centre convention (pixel ``i`` covers ``[i - 0.5, i + 0.5)``), the same
as ``trainables.letterbox`` and ``trainables.heatmap``, so a landmark keeps its place on the
anatomy under the warp. There is no horizontal flip: cephalograms face one way and the landmark
set is not left/right symmetric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

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

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
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
    )


def random_affine(cfg: AugmentConfig, size: int, rng: np.random.Generator) -> np.ndarray:
    """3x3 matrix mapping input pixels to output pixels: rotate and scale about the centre,
    then translate."""
    angle = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    scale = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
    shift = rng.uniform(-cfg.translate, cfg.translate, size=2) * size
    c = (size - 1) / 2.0  # the image centre in pixel-centre coordinates
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array(
        [
            [cos, -sin, c - cos * c + sin * c + shift[0]],
            [sin, cos, c - sin * c - cos * c + shift[1]],
            [0.0, 0.0, 1.0],
        ]
    )


def warp_points(xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 3x3 affine ``matrix`` to (..., 2) points; NaN (missing) stays NaN."""
    xy = np.asarray(xy, dtype=np.float64)
    return xy @ matrix[:2, :2].T + matrix[:2, 2]


def warp_image(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Bilinear warp of a float (H, W) image by ``matrix``; outside the source is 0 (the pad)."""
    h, w = image.shape
    inv = np.linalg.inv(matrix)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0).astype(np.float32), (sy - y0).astype(np.float32)
    # Index into a zero border: every out-of-range sample reads 0.
    padded = np.pad(image.astype(np.float32, copy=False), 1)
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    xi, xj = np.clip(x0 + 1, 0, w + 1), np.clip(x0 + 2, 0, w + 1)
    yi, yj = np.clip(y0 + 1, 0, h + 1), np.clip(y0 + 2, 0, h + 1)
    top = padded[yi, xi] * (1 - fx) + padded[yi, xj] * fx
    bottom = padded[yj, xi] * (1 - fx) + padded[yj, xj] * fx
    return top * (1 - fy) + bottom * fy


def jitter_intensity(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Gamma, contrast and brightness jitter of a [0, 1] image; the result stays in [0, 1]."""
    gamma = math.exp(rng.uniform(-cfg.gamma, cfg.gamma))
    contrast = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    brightness = 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
    out = image
    if gamma != 1.0:
        out = np.power(out, gamma)
    if contrast != 1.0:
        mean = float(out.mean())
        out = (out - mean) * contrast + mean
    if brightness != 1.0:
        out = out * brightness
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def augment(
    image: np.ndarray, coords: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly warp and jitter one letterboxed image (uint8 or float in [0, 1]) and its (K, 2)
    landmarks in input pixels. Returns a float32 image in [0, 1] and float32 coordinates."""
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    else:
        image = np.asarray(image, dtype=np.float32)
    coords = np.asarray(coords, dtype=np.float64)
    matrix = random_affine(cfg, image.shape[-1], rng)
    if not np.array_equal(matrix, np.eye(3)):
        image = np.clip(warp_image(image, matrix), 0.0, 1.0)
        coords = warp_points(coords, matrix)
    return jitter_intensity(image, cfg, rng), coords.astype(np.float32)
