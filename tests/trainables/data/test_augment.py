"""Augmentation: one affine warp moves image and landmarks together; intensity stays in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.config import TrainConfig
from trainables.data.augment import (
    AugmentConfig,
    apply,
    augment,
    augment_config,
    draw,
    flip_matrix,
    random_affine,
    warp_image,
)
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


def reference_warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Textbook bilinear warp in float64: output pixel p samples the source at matrix^-1 p,
    pixel centres at integers, every tap outside the image reads 0."""
    h, w = image.shape
    inv = np.linalg.inv(matrix)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0

    def tap(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        return np.where(inside, image[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)], 0.0)

    top = tap(y0, x0) * (1 - fx) + tap(y0, x0 + 1) * fx
    bottom = tap(y0 + 1, x0) * (1 - fx) + tap(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


@pytest.mark.parametrize("shape", [(SIZE, SIZE), (40, 56), (256, 256)])
@pytest.mark.parametrize("seed", range(4))
def test_warp_matches_a_reference_bilinear_warp(shape, seed):
    # Strong warps, so that part of the output samples outside the image (the zero pad).
    cfg = AugmentConfig(rotation_deg=40, scale=0.4, translate=0.3)
    rng = np.random.default_rng(seed)
    image = rng.random(shape).astype(np.float32)
    matrix = random_affine(cfg, shape[1], rng)
    out = warp_image(image, matrix)
    assert out.dtype == np.float32 and out.shape == shape
    np.testing.assert_allclose(out, reference_warp(image.astype(np.float64), matrix), atol=1e-4)


def test_integer_shift_moves_pixels_exactly():
    image = np.random.default_rng(0).random((SIZE, SIZE)).astype(np.float32)
    matrix = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])
    out = warp_image(image, matrix)
    np.testing.assert_allclose(out[: SIZE - 2, 3:], image[2:, : SIZE - 3], atol=1e-5)
    assert np.abs(out[:, :3]).max() < 1e-5 and np.abs(out[SIZE - 2 :, :]).max() < 1e-5


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


def test_flip_mirrors_x_only_and_about_half_the_time():
    """``aug_flip``: the blob and its landmark mirror together (x -> W - 1 - x, y kept); the
    landmark keeps its index, since every landmark is midline or a bilateral mean."""
    cfg = AugmentConfig(flip=True)
    point = np.array([[12.3, 40.6]])
    flipped = 0
    for seed in range(40):
        image, coords = augment(blob(point[0]), point, cfg, np.random.default_rng(seed))
        if coords[0, 0] != pytest.approx(point[0, 0], abs=1e-4):
            flipped += 1
            np.testing.assert_allclose(coords[0], [SIZE - 1 - point[0, 0], point[0, 1]], atol=1e-4)
        assert np.linalg.norm(centroid(image) - coords[0]) < 0.5
    assert 10 <= flipped <= 30


def test_flip_is_off_unless_asked_and_leaves_the_other_draws_alone():
    assert augment_config(TrainConfig()).flip is False
    assert augment_config(TrainConfig(aug_flip=True)).flip is True
    plain = AugmentConfig(rotation_deg=20, scale=0.1)
    both = AugmentConfig(rotation_deg=20, scale=0.1, flip=True)
    for seed in range(6):
        a = random_affine(plain, SIZE, np.random.default_rng(seed))
        b = random_affine(both, SIZE, np.random.default_rng(seed))
        # Either the same warp, or the same warp mirrored.
        assert np.allclose(a, b) or np.allclose(flip_matrix(SIZE) @ a, b)


def test_rectangular_warp_rotates_about_its_own_centre():
    cfg = AugmentConfig(rotation_deg=30, scale=0.2)
    matrix = random_affine(cfg, (48, 80), np.random.default_rng(1))
    centre = [(48 - 1) / 2, (80 - 1) / 2, 1]
    np.testing.assert_allclose(matrix @ centre, centre, atol=1e-9)


STRONG = AugmentConfig(
    rotation_deg=20, scale=0.15, translate=0.08, brightness=0.3, contrast=0.3, gamma=0.3, flip=True
)


def test_a_batch_is_augmented_as_each_of_its_samples_alone():
    """Where the step runs, one call warps and jitters a batch of uint8 images, each by its own
    draws: the same images as one sample at a time (``augment``), the same landmarks."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, SIZE, SIZE), dtype=np.uint8)
    coords = rng.uniform(5, SIZE - 5, (6, 3, 2))
    rows, warped = zip(
        *(draw(STRONG, c, (SIZE, SIZE), np.random.default_rng(s)) for s, c in enumerate(coords)),
        strict=True,
    )
    batch = apply(torch.from_numpy(images)[:, None], torch.from_numpy(np.stack(rows)), STRONG)
    assert batch.dtype == torch.float32 and batch.shape == (6, 1, SIZE, SIZE)
    for s, (image, c) in enumerate(zip(images, coords, strict=True)):
        alone, xy = augment(image, c, STRONG, np.random.default_rng(s))
        np.testing.assert_allclose(batch[s, 0].numpy(), alone, atol=1e-6)
        np.testing.assert_array_equal(xy, warped[s])


def test_the_draws_are_made_in_a_fixed_order_whatever_is_enabled():
    """The warp's draws come before the intensity's: turning intensity jitter on changes no
    sample's geometry (a seed keeps its warp), and the landmarks follow the warp alone."""
    geometry = AugmentConfig(rotation_deg=20, scale=0.15, translate=0.08, flip=True)
    point = np.array([[27.3, 36.8]])
    for seed in range(5):
        row_a, xy_a = draw(geometry, point, (SIZE, SIZE), np.random.default_rng(seed))
        row_b, xy_b = draw(STRONG, point, (SIZE, SIZE), np.random.default_rng(seed))
        np.testing.assert_array_equal(row_a[:6], row_b[:6])
        np.testing.assert_array_equal(xy_a, xy_b)
        assert (row_a[6:] == 1).all() and (row_b[6:] != 1).all()
