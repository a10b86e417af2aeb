"""Test-time augmentation: every transform's prediction maps back to the same original pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trainables.data.letterbox import Letterbox
from trainables.eval import heatmap
from trainables.eval.inference import predict
from trainables.eval.tta import TTA, unwarp_points, warp
from trainables.precision import Precision

W, H = 64, 96
TRUTH = np.array([[20.3, 30.7], [45.6, 70.2]])  # input pixels, away from the border


class Echo(nn.Module):
    """A 'model' whose heatmaps are its input channels at stride 1: a perfect landmark detector
    for images that are one Gaussian blob per landmark."""

    stride = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def blobs() -> torch.Tensor:
    target = heatmap.encode(torch.tensor(TRUTH, dtype=torch.float32)[None], H, W, 2.0)
    return target  # (1, K, H, W): one channel per landmark


@pytest.mark.parametrize("flip", [False, True])
def test_every_transform_maps_its_prediction_back(flip):
    """No transform's error can hide in the mean: each one alone lands on the truth."""
    tta = TTA(flip=flip)
    matrices = tta.matrices(W, H)
    assert len(matrices) == (10 if flip else 5)
    assert sum(not np.allclose(m, np.eye(3)) for m in matrices) == len(matrices) - 1
    for matrix in matrices:
        out = Echo()(warp(blobs(), matrix))
        xy = unwarp_points(heatmap.decode(out)[0].numpy(), matrix)
        np.testing.assert_allclose(xy, TRUTH, atol=0.05)


def test_a_wrong_inverse_would_be_seen():
    matrix = TTA().matrices(W, H)[-1]  # the (-3, -3) px shift
    out = Echo()(warp(blobs(), matrix))
    xy = heatmap.decode(out)[0].numpy()
    assert np.abs(xy - TRUTH).max() > 2.9  # unmapped, it is off by the shift


def test_predict_merges_in_original_pixels():
    """Through ``predict``: a letterbox from a 1935 x 2400 original, TTA with mirrors; the merged
    landmarks are the truth in original pixels, as without TTA."""
    box = Letterbox.fit(1935, 2400, (W, H))
    precision = Precision.resolve("fp32", "cpu")
    plain = predict(Echo(), [(blobs(), [box.inverse])], precision)
    merged = predict(Echo(), [(blobs(), [box.inverse])], precision, tta=TTA(flip=True))
    np.testing.assert_allclose(plain[0], box.inverse(TRUTH), atol=0.5)
    np.testing.assert_allclose(merged[0], box.inverse(TRUTH), atol=0.5)


class Counted(Echo):
    """Echo that counts its forward passes and the samples they took."""

    def __init__(self) -> None:
        super().__init__()
        self.passes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes.append(len(x))
        return x


def test_every_transform_of_a_batch_is_one_forward_pass_and_each_image_keeps_its_own():
    """Three different images, ten transforms: one pass of 30 samples, and each image's merged
    landmarks are its own (the transforms' parts are not mixed up between images)."""
    truths = [TRUTH, TRUTH + [[5.0, -4.0], [-6.0, 3.0]], TRUTH + [[-3.0, 8.0], [4.0, -9.0]]]
    images = torch.cat(
        [heatmap.encode(torch.tensor(t, dtype=torch.float32)[None], H, W, 2.0) for t in truths]
    )
    model = Counted()
    precision = Precision.resolve("fp32", "cpu")
    same = [lambda p: p] * len(truths)
    merged = predict(model, [(images, same)], precision, tta=TTA(flip=True))
    assert model.passes == [30]
    for found, truth in zip(merged, truths, strict=True):
        np.testing.assert_allclose(found, truth, atol=0.1)
