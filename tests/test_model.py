"""Every registered model x loss: output shape, a gradient on every parameter, no NaN."""

from __future__ import annotations

import pytest
import torch

from trainables import heatmap
from trainables.config import TrainConfig
from trainables.errors import ConfigError
from trainables.loss import LOSSES, create_loss
from trainables.model import MODELS, create_model


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_forward_backward(model, loss):
    torch.manual_seed(0)
    cfg = TrainConfig(model=model, backbone="hrnet_w18_small", loss=loss, image_size=64)
    net = create_model(cfg, 29)
    x = torch.rand(2, 1, 64, 64)
    out = net(x)
    assert out.shape == (2, 29, 64 // net.stride, 64 // net.stride)
    coords = torch.rand(2, 29, 2) * 15
    target = heatmap.encode(coords, 16, 16, 1.0)
    value = create_loss(cfg)(out, target)
    value.backward()
    assert torch.isfinite(value)
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_unknown_model_and_backbone_list_known_names():
    with pytest.raises(ConfigError, match="known: hrnet"):
        create_model(TrainConfig(model="vit"), 29)
    with pytest.raises(ConfigError, match="hrnet_w18_small"):
        create_model(TrainConfig(backbone="hrnet_w99"), 29)
