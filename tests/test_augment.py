"""Augmentation: one affine warp moves image and landmarks together; intensity stays in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.augment import AugmentConfig, augment, augment_config, random_affine
from trainables.config import TrainConfig
from trainables.errors import ConfigError

SIZE = 64


def blob(center: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    d2 = (xs - center[0]) ** 2 + (ys - center[1]) ** 2
    return np.exp(-d2 / (2 * sigma**2)).astype(np.float32)


def centroid(image: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    return np.array([(xs * image).sum(), (ys * image).sum()]) / image.sum()


@pytest.mark.parametrize("seed", range(5))
def test_blob_moves_with_its_landmark(seed):
    cfg = AugmentConfig(rotation_deg=20, scale=0.15, translate=0.08)
    point = np.array([[27.3, 36.8]])
    image, coords = augment(blob(point[0]), point, cfg, np.random.default_rng(seed))
    assert np.abs(coords - point).max() > 1  # the warp did move it
    assert np.linalg.norm(centroid(image) - coords[0]) < 0.5


def test_matrix_rotates_about_the_pixel_centre_of_the_image():
    cfg = AugmentConfig(rotation_deg=30, scale=0.2)
    matrix = random_affine(cfg, SIZE, np.random.default_rng(0))
    c = (SIZE - 1) / 2
    np.testing.assert_allclose(matrix @ [c, c, 1], [c, c, 1], atol=1e-9)


def test_intensity_stays_in_unit_range_and_is_seeded():
    cfg = AugmentConfig(
        rotation_deg=10, scale=0.1, translate=0.1, brightness=0.9, contrast=0.9, gamma=1.0
    )
    image = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    coords = np.array([[10.0, 20.0], [np.nan, np.nan]])
    for seed in range(10):
        out, xy = augment(image, coords, cfg, np.random.default_rng(seed))
        assert out.dtype == np.float32 and out.shape == (SIZE, SIZE)
        assert 0 <= out.min() and out.max() <= 1
        assert np.isnan(xy[1]).all() and np.isfinite(xy[0]).all()
    again, _ = augment(image, coords, cfg, np.random.default_rng(9))
    np.testing.assert_array_equal(out, again)


def test_zero_strength_is_the_identity():
    image = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    coords = np.array([[10.25, 20.5], [np.nan, np.nan]])
    out, xy = augment(image, coords, AugmentConfig(), np.random.default_rng(0))
    np.testing.assert_array_equal(out, image.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(xy, coords.astype(np.float32))


def test_config_from_trainable_settings_and_validation():
    assert augment_config(TrainConfig(augment=False)) is None
    cfg = augment_config(TrainConfig(aug_rotation_deg=7.0, aug_gamma=0.3))
    assert cfg.rotation_deg == 7.0 and cfg.gamma == 0.3
    with pytest.raises(ConfigError, match="rotation_deg must be >= 0"):
        AugmentConfig(rotation_deg=-1)
    with pytest.raises(ConfigError, match="scale must be < 1"):
        AugmentConfig(scale=1.0)
