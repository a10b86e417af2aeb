"""Every registered model x loss: output shape, a gradient on every parameter, no NaN."""

from __future__ import annotations

import functools

import pytest
import timm
import torch

from trainables.config import TrainConfig
from trainables.errors import ConfigError
from trainables.eval import heatmap
from trainables.losses import LOSSES, create_loss
from trainables.models import MODELS, create_model, get_model

SIZE = 64
K = 29


@functools.cache
def default_model(name: str) -> torch.nn.Module:
    """Built once per model (the default variant) and shared by the loss cases."""
    torch.manual_seed(0)
    return create_model(TrainConfig(model=name, image_size=SIZE), K)


def as_list(out: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return out if isinstance(out, list) else [out]


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_forward_backward(model, loss):
    torch.manual_seed(0)
    net = default_model(model).train()
    net.zero_grad(set_to_none=True)
    assert net.stride == 4
    outs = as_list(net(torch.rand(2, 1, SIZE, SIZE)))
    side = SIZE // net.stride
    for out in outs:
        assert out.shape == (2, K, side, side)
        assert torch.isfinite(out).all()
    target = heatmap.encode(torch.rand(2, K, 2) * (side - 1), side, side, 1.0)
    loss_fn = create_loss(TrainConfig(loss=loss))
    # Intermediate supervision: every stack's heatmaps are trained towards the target.
    value = sum(loss_fn(out, target) for out in outs)
    value.backward()
    assert torch.isfinite(value)
    for name, p in net.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("stacks", [1, 3])
def test_hourglass_supervises_every_stack_and_evaluates_the_last(stacks):
    net = create_model(TrainConfig(model="hourglass", hourglass_stacks=stacks), K)
    x = torch.rand(2, 1, SIZE, SIZE)
    outs = net.train()(x)
    assert isinstance(outs, list) and len(outs) == stacks
    with torch.no_grad():
        out = net.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, K, 16, 16)


@pytest.mark.parametrize(
    ("model", "backbone"),
    [("hrnet", "hrnet_w18_small"), ("resnet", "resnet18"), ("unet", "resnet18")]
    # Any timm features_only model serves as a U-Net encoder; ConvNeXt has no stride-2 level.
    + [("unet", "convnext_atto")],
)
def test_other_backbones(model, backbone):
    net = create_model(TrainConfig(model=model, backbone=backbone), K).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, SIZE, SIZE))
    assert out.shape == (1, K, 16, 16)


SMALL = {"hrnet": "hrnet_w18_small", "resnet": "resnet18", "unet": "resnet18", "hourglass": None}


@pytest.mark.parametrize("stride", [2, 1])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_offers_heatmap_strides_2_and_1_on_rectangles(model, stride):
    """A portrait 64 x 96 input gives (96 / s) x (64 / s) heatmaps that train: every parameter,
    the upsampling head's included, gets a finite gradient."""
    torch.manual_seed(0)
    cfg = TrainConfig.from_dict(
        {"model": model, "backbone": SMALL[model], "heatmap_stride": stride, "image_size": [64, 96]}
    )
    net = create_model(cfg, K).train()
    assert net.stride == stride
    outs = as_list(net(torch.rand(2, 1, 96, 64)))
    h, w = 96 // stride, 64 // stride
    target = heatmap.encode(torch.rand(2, K, 2) * (w - 1), h, w, 1.0)
    for out in outs:
        assert out.shape == (2, K, h, w)
    sum(create_loss(TrainConfig())(out, target) for out in outs).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_unknown_model_lists_known_names():
    """The config refuses the name when it is made, listing the registry's names; the registry
    itself lists them too."""
    with pytest.raises(ConfigError, match="model must be one of hourglass, hrnet, resnet, unet"):
        create_model(TrainConfig(model="vit"), K)
    with pytest.raises(ConfigError, match="known: hourglass, hrnet, resnet, unet"):
        get_model("vit")


@pytest.mark.parametrize(
    ("model", "backbone", "message"),
    [
        # refused when the config is made (trainables.key_rules), before anything is built
        ("hrnet", "hrnet_w99", "one of hrnet_w18_small, hrnet_w18_small_v2, hrnet_w18, hrnet_w32"),
        ("resnet", "resnet101", "one of resnet18, resnet34, resnet50 for resnet"),
        ("hourglass", "resnet18", "must be null for hourglass .it takes no backbone."),
        # an open-ended model: only timm can tell, when the model is built
        ("unet", "no_such_net", "known: resnet18, resnet34, resnet50, or any timm model"),
        ("unet", "vit_tiny_patch16_224", "no features at stride 4, 8, 32.*known: resnet18"),
    ],
)
def test_invalid_backbone_names_the_choices(model, backbone, message):
    with pytest.raises(ConfigError, match=message):
        create_model(TrainConfig(model=model, backbone=backbone), K)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(hourglass_stacks=0), "hourglass_stacks must be > 0, got 0"),
        (dict(pretrained=True), "pretrained must be false for hourglass .it has no pretrained"),
    ],
)
def test_hourglass_rejects_bad_settings(changes, message):
    with pytest.raises(ConfigError, match=message):
        create_model(TrainConfig(model="hourglass", **changes), K)


@pytest.mark.parametrize("model", ["hrnet", "resnet", "unet"])
def test_missing_pretrained_file(model, tmp_path):
    cfg = TrainConfig(model=model, pretrained=True, pretrained_file=str(tmp_path / "none.pth"))
    with pytest.raises(ConfigError, match="none.pth' does not exist"):
        create_model(cfg, K)


def test_pretrained_file_loads_local_weights(tmp_path):
    # A randomly initialised classifier stands in for downloaded ImageNet weights.
    path = tmp_path / "resnet18.pth"
    source = timm.create_model("resnet18")
    torch.save(source.state_dict(), path)
    cfg = TrainConfig(
        model="resnet", backbone="resnet18", pretrained=True, pretrained_file=str(path)
    )
    net = create_model(cfg, K)
    assert torch.equal(net.backbone.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    # timm folds the RGB stem into one greyscale channel.
    assert torch.allclose(net.backbone.conv1.weight, source.conv1.weight.sum(1, keepdim=True))

    # timm loads these non-strictly: resnet18 weights would leave resnet34's extra blocks random.
    cfg.backbone = "resnet34"
    with pytest.raises(ConfigError, match="lacks .* 'resnet34' backbone's tensors"):
        create_model(cfg, K)
    cfg.backbone = "resnet50"
    with pytest.raises(ConfigError, match="could not load pretrained weights for 'resnet50'"):
        create_model(cfg, K)
