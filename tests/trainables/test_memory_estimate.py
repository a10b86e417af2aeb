"""The training-memory estimate counts on the meta device what a real forward pass keeps."""

from __future__ import annotations

import torch

from trainables.config import TrainConfig
from trainables.losses import create_loss
from trainables.memory_estimate import ADAMW_MOMENTS, estimate
from trainables.models import create_model


def config(**values) -> TrainConfig:
    base = {"data_dir": "nowhere", "model": "hrnet", "backbone": "hrnet_w18_small"}
    return TrainConfig.from_dict({**base, "image_size": 64, "batch_size": 2, **values})


def saved_by_a_real_pass(cfg: TrainConfig) -> tuple[int, int]:
    """(parameter bytes, bytes autograd saves) of a real CPU forward pass and loss, counted by
    storage address: what the estimate must find without allocating."""
    torch.manual_seed(0)
    model = create_model(cfg, 29)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    images = torch.rand(cfg.batch_size, 1, 64, 64)
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        out = model(images)
        create_loss(cfg)(out, torch.rand_like(out))
    return sum(p.nbytes for p in model.parameters()), sum(saved.values())


def test_the_estimate_counts_what_a_real_pass_saves_without_allocating_it():
    cfg = config()
    found = estimate(cfg, 29)
    params, saved = saved_by_a_real_pass(cfg)
    assert found.parameters == found.gradients == params
    assert found.optimizer == ADAMW_MOMENTS * params
    assert found.activations == saved
    assert found.peak == 3 * params + max(saved, params)


def test_activations_grow_with_the_batch_and_halve_under_amp():
    one, four = estimate(config(batch_size=1), 29), estimate(config(batch_size=4), 29)
    assert one.parameters == four.parameters
    assert 3.9 < four.activations / one.activations < 4.1  # per sample, a constant or two aside
    half = estimate(config(batch_size=4), 29, half=True)
    assert 0.45 < half.activations / four.activations < 0.55  # integer masks stay whole
    assert estimate(config(batch_size=4, precision="bf16"), 29).activations == half.activations
