"""Losses against a direct, element-by-element implementation of the paper's formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainables.config import TrainConfig
from trainables.errors import ConfigError
from trainables.losses import create_loss
from trainables.losses.heatmap import adaptive_wing


def awing_scalar(
    y: float, yhat: float, omega: float, theta: float, eps: float, alpha: float
) -> float:
    delta = abs(y - yhat)
    p = alpha - y
    if delta < theta:
        return omega * math.log(1 + (delta / eps) ** p)
    a = omega * (1 / (1 + (theta / eps) ** p)) * p * (theta / eps) ** (p - 1) / eps
    c = theta * a - omega * math.log(1 + (theta / eps) ** p)
    return a * delta - c


@pytest.mark.parametrize("params", [(14.0, 0.5, 1.0, 2.1), (10.0, 0.3, 2.0, 2.5)])
def test_adaptive_wing_matches_paper_formula(params):
    omega, theta, eps, alpha = params
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 5, 5, generator=g)
    pred = target + torch.randn(2, 3, 5, 5, generator=g)  # both branches of the piecewise loss
    got = adaptive_wing(pred, target, omega, theta, eps, alpha, weight_map=False)
    expected = sum(
        awing_scalar(y, p, omega, theta, eps, alpha)
        for y, p in zip(target.flatten().tolist(), pred.flatten().tolist(), strict=True)
    )
    assert got.item() == pytest.approx(expected / target.numel(), rel=1e-5)


def test_weight_map_scales_foreground_by_w_plus_one():
    target = torch.zeros(1, 1, 7, 7)
    target[0, 0, 3, 3] = 1.0
    pred = torch.full_like(target, 0.1)
    plain = adaptive_wing(pred, target, weight_map=False, weight=10.0)
    weighted = adaptive_wing(pred, target, weight_map=True, weight=10.0)
    # 3x3 dilation of the single peak marks 9 pixels; they count 11x, the other 40 count 1x.
    per_pixel = [awing_scalar(y, 0.1, 14, 0.5, 1, 2.1) for y in target.flatten().tolist()]
    mask = F.max_pool2d(target, 3, 1, 1).flatten() > 0.2
    expected = sum(v * (11 if m else 1) for v, m in zip(per_pixel, mask.tolist(), strict=True)) / 49
    assert weighted.item() == pytest.approx(expected, rel=1e-5)
    assert weighted.item() > plain.item()


def test_loss_is_zero_at_the_target():
    target = torch.rand(1, 2, 4, 4)
    assert adaptive_wing(target.clone(), target).item() == pytest.approx(0.0, abs=1e-7)


def test_heatmap_loss_is_mse():
    a, b = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    fn = create_loss(TrainConfig(loss="heatmap"))
    assert fn(a, b).item() == pytest.approx(((a - b) ** 2).mean().item())


def test_unknown_loss_lists_known_names():
    with pytest.raises(ConfigError, match="loss must be one of adaptive_wing, heatmap, got 'wing'"):
        create_loss(TrainConfig(loss="wing"))
