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


def test_the_fitted_line_gives_the_estimate_at_other_batches_and_sizes():
    """What init and the start's check use: one line per model, scaled by the batch and the
    pixels, against the estimate counted at each (batch, size) itself."""
    from trainables.memory_estimate import fit

    line = fit(config(image_size=128), 29)  # at the largest size, as the callers fit it
    for batch, size in ((4, 64), (6, 128), (3, 96), (12, 96)):
        direct = estimate(config(batch_size=batch, image_size=size), 29).peak
        assert abs(line.peak(batch, size * size) - direct) / direct < 0.02
    # Below the kink (the optimiser's step outweighs a sample at 64 px) the floor, one sample at
    # 128 px, is over the truth: a check errs on the safe side.
    assert line.peak(1, 64 * 64) >= estimate(config(batch_size=1), 29).peak
    room = line.peak(5, 128 * 128)
    assert line.largest_batch(room, 128 * 128) == 5
    assert line.largest_batch(room, 128 * 128, step=2) == 4
    assert line.largest_batch(line.fixed, 128 * 128) == 0
