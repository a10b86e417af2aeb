"""Heatmap encode/decode and letterbox mapping round trips."""

from __future__ import annotations

import numpy as np
import torch

from trainables.data.letterbox import Letterbox
from trainables.eval import heatmap


def test_encode_decode_round_trip_is_sub_pixel():
    g = torch.Generator().manual_seed(0)
    coords = 4 + torch.rand(3, 29, 2, generator=g) * 24  # interior of a 32 x 32 heatmap
    for sigma in (0.75, 1.5, 3.0):
        decoded = heatmap.decode(heatmap.encode(coords, 32, 32, sigma))
        assert (decoded - coords).abs().max().item() < 0.1


def test_decode_beats_plain_argmax():
    coords = torch.tensor([[[10.4, 7.6]]])
    decoded = heatmap.decode(heatmap.encode(coords, 20, 20, 1.5))
    argmax_error = (torch.round(coords) - coords).abs().max().item()
    assert (decoded - coords).abs().max().item() < argmax_error / 4


def test_missing_landmark_gets_an_empty_target():
    coords = torch.tensor([[[5.0, 5.0], [float("nan"), float("nan")]]])
    target = heatmap.encode(coords, 16, 16, 1.0)
    assert target[0, 0].max().item() == 1.0
    assert target[0, 1].abs().sum().item() == 0.0


def test_stride_mapping_inverts():
    u = torch.tensor([0.0, 13.7, 255.0])
    assert torch.allclose(heatmap.from_heatmap(heatmap.to_heatmap(u, 4), 4), u)


def test_letterbox_round_trip_and_aspect():
    box = Letterbox.fit(1935, 2400, 256)
    assert box.scale_x == box.scale_y or abs(box.scale_x - box.scale_y) < 1e-3
    assert box.pad_y == 0 and box.pad_x > 0
    pts = np.array([[0.0, 0.0], [1934.0, 2399.0], [967.3, 1200.8]])
    inside = box.forward(pts)
    assert inside.min() >= -0.5 and inside.max() <= 255.5
    assert np.allclose(box.inverse(inside), pts)
