"""The training-memory estimate counts on the meta device what real training steps hold."""

from __future__ import annotations

import pytest
import torch

from trainables.config import TrainConfig
from trainables.losses import create_loss
from trainables.memory_estimate import ADAMW_MOMENTS, count_steps, estimate
from trainables.models import create_model


def config(**values) -> TrainConfig:
    base = {"data_dir": "nowhere", "model": "hrnet", "backbone": "hrnet_w18_small"}
    return TrainConfig.from_dict({**base, "image_size": 64, "batch_size": 2, **values})


def real_steps(cfg: TrainConfig) -> tuple[int, int, int]:
    """(parameter bytes, bytes autograd saves in a step, peak bytes alive) of two real CPU
    training steps, counted as the estimate counts them on the meta device."""
    torch.manual_seed(0)
    model = create_model(cfg, 29)

    def images() -> torch.Tensor:
        return torch.rand(cfg.batch_size, 1, 64, 64)

    saved, peak = count_steps(model, create_loss(cfg), images)
    return sum(p.nbytes for p in model.parameters()), saved, peak


@pytest.mark.parametrize("model", [{}, {"model": "unet", "backbone": "resnet18"}])
def test_the_estimate_counts_what_real_steps_hold_without_allocating(model):
    cfg = config(**model)
    found = estimate(cfg, 29)
    params, saved, peak = real_steps(cfg)
    assert found.parameters == found.gradients == params
    assert found.optimizer == ADAMW_MOMENTS * params
    assert found.activations == saved
    assert found.peak == peak
    assert found.peak > params + found.optimizer + found.activations  # and the transients


def test_activations_grow_with_the_batch_and_halve_under_amp():
    one, four = estimate(config(batch_size=1), 29), estimate(config(batch_size=4), 29)
    assert one.parameters == four.parameters
    assert 3.9 < four.activations / one.activations < 4.1  # per sample, a constant or two aside
    assert four.peak > one.peak
    half = estimate(config(batch_size=4), 29, half=True)
    assert half.peak == four.peak - four.activations // 2
    assert estimate(config(batch_size=4, precision="bf16"), 29).peak == half.peak
