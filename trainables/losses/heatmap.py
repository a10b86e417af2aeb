"""The heatmap losses: Adaptive Wing and MSE, and their builders from a trainable config."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def adaptive_wing(
    pred: torch.Tensor,
    target: torch.Tensor,
    omega: float = 14.0,
    theta: float = 0.5,
    epsilon: float = 1.0,
    alpha: float = 2.1,
    weight: float = 10.0,
    weight_map: bool = True,
) -> torch.Tensor:
    """Adaptive Wing loss (Wang, Bo, Fuxin, ICCV 2019), mean over all heatmap pixels.

    With ``weight_map`` every pixel is scaled by ``weight * M + 1``, M = 1 where the 3x3 grey
    dilation of the target exceeds 0.2 (the foreground around each peak).
    """
    pred = pred.float()
    target = target.float()
    delta = (target - pred).abs()
    power = alpha - target
    ratio = theta / epsilon
    a = omega * (1.0 / (1.0 + ratio**power)) * power * ratio ** (power - 1.0) / epsilon
    c = theta * a - omega * torch.log1p(ratio**power)
    loss = torch.where(
        delta < theta, omega * torch.log1p((delta / epsilon) ** power), a * delta - c
    )
    if weight_map:
        dilated = F.max_pool2d(target, kernel_size=3, stride=1, padding=1)
        loss = loss * (weight * (dilated > 0.2).float() + 1.0)
    return loss.mean()


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred.float(), target.float())


def build_adaptive_wing(cfg) -> LossFn:
    kwargs = dict(
        omega=cfg.aw_omega,
        theta=cfg.aw_theta,
        epsilon=cfg.aw_epsilon,
        alpha=cfg.aw_alpha,
        weight=cfg.aw_weight,
        weight_map=cfg.aw_weight_map,
    )
    return lambda pred, target: adaptive_wing(pred, target, **kwargs)


def build_mse(cfg) -> LossFn:
    return heatmap_mse
