"""An ensemble of members with different input sizes and strides merges in original pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.config import TrainConfig
from trainables.data.dataset import LandmarkDataset
from trainables.data.formats import load_split
from trainables.data.synth import SynthSpec, write_dataset
from trainables.eval.ensemble import Ensemble
from trainables.eval.inference import predict_dataset, predict_images
from trainables.eval.tta import TTA
from trainables.models import create_model
from trainables.precision import Precision


def test_members_of_different_sizes_and_strides_merge_in_original_pixels(tmp_path):
    root = write_dataset(SynthSpec(n=6, width=80, height=100, seed=2), tmp_path / "d")
    torch.manual_seed(0)
    small = create_model(TrainConfig(model="hrnet", backbone="hrnet_w18_small"), 29).eval()
    tall = TrainConfig(model="resnet", backbone="resnet18", heatmap_stride=2, image_size="64x96")
    portrait = create_model(tall, 29).eval()
    ensemble = Ensemble([small, portrait], [64, "64x96"], [False, True])
    images = sorted(root.glob("test/Cephalograms/*.png"))
    merged = predict_images(ensemble, images, 64)
    each = [predict_images(small, images, 64), predict_images(portrait, images, "64x96")]
    assert np.abs(each[0] - each[1]).max() > 0.1  # two different members
    np.testing.assert_allclose(merged, np.mean(each, axis=0), atol=1e-6)

    # The same through a dataset (promote's test split), TTA mirrored only for the flip member.
    records = load_split(root, "test", "mean")
    data = LandmarkDataset(records, 64, fmt="aariz", root=root, split="test", cache_dir=tmp_path)
    cpu = Precision.resolve("fp32", "cpu")
    tta = TTA(flip=True)
    got = predict_dataset(ensemble, data, cpu, 2, tta)
    want = np.mean(
        [
            predict_dataset(small, data, cpu, 2, TTA(flip=False)),
            predict_dataset(portrait, data.resized("64x96"), cpu, 2, tta),
        ],
        axis=0,
    )
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(TypeError, match="predicts through"):
        ensemble(torch.zeros(1, 1, 64, 64))
