"""What the landmark models share: timm encoders with optional ImageNet weights, head init, and
the heatmap layer at the configured stride (``heatmap_layer``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from trainables.errors import ConfigError, first_line


@contextlib.contextmanager
def _expected_keys_unlogged() -> Iterator[None]:
    """Without timm's "Unexpected keys ... found while loading pretrained weights" warning: a
    ``features_only`` encoder leaves out the classifier's layers (HRNet: its incre, downsample
    and final layers), so every ImageNet checkpoint has those keys to spare. Missing keys are
    still logged."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Unexpected keys (")

    logger = logging.getLogger("timm.models._builder")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def timm_encoder(
    model: str, name: str, cfg: Any, known: tuple[str, ...], open_ended: bool = False, **kwargs: Any
) -> nn.Module:
    """A timm ``features_only`` encoder for greyscale input, ImageNet weights if ``cfg.pretrained``.

    ``known`` are the backbones this model is tested with; ``open_ended`` also accepts any other
    timm model that builds as a feature extractor. Every failure is a one-line ``ConfigError``.
    """
    choices = ", ".join(known) + (", or any timm model with features_only" if open_ended else "")
    if name not in known and not (open_ended and timm.is_model(name)):
        raise ConfigError(f"unknown {model} backbone {name!r}; known: {choices}")

    overlay = None
    if cfg.pretrained and cfg.pretrained_file is not None:
        path = Path(cfg.pretrained_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"pretrained_file {str(path)!r} does not exist or is not a file")
        overlay = dict(file=str(path))

    def build(pretrained: bool) -> nn.Module:
        return timm.create_model(
            name,
            pretrained=pretrained,
            pretrained_cfg_overlay=overlay,
            features_only=True,
            in_chans=1,
            **kwargs,
        )

    if name not in known:
        # Only an attempt tells whether an arbitrary timm model supports features_only; doing
        # it without weights first keeps a weight failure apart from an architecture failure.
        try:
            encoder = build(pretrained=False)
        except Exception as err:
            raise ConfigError(
                f"{model} backbone {name!r} cannot be built as a feature extractor "
                f"({first_line(err, with_type=True)}); known: {choices}"
            ) from err
        if not cfg.pretrained:
            return encoder
    elif not cfg.pretrained:
        return build(pretrained=False)
    try:
        with _expected_keys_unlogged():
            encoder = build(pretrained=True)
    except Exception as err:
        # Download, file, hub and checkpoint-format errors have no common base class.
        if overlay:
            source = f"pretrained_file {cfg.pretrained_file!r}"
            hint = f"pretrained_file must hold timm ImageNet weights for {name!r}"
        else:
            source, cache = hub_source(name)
            hint = (
                f"they are neither in the cache {cache} nor downloadable here: fetch them where "
                f"there is network (python -c \"import timm; timm.create_model('{name}', "
                'pretrained=True)") and copy that cache folder here, or set pretrained_file to '
                "a local weights file"
            )
        raise ConfigError(
            f"could not load pretrained weights for {name!r} from {source} "
            f"({first_line(err, with_type=True)}); {hint}, or set pretrained: false"
        ) from err
    if overlay:
        _check_file_covers(encoder, overlay["file"], name)
    return encoder


def hub_source(name: str) -> tuple[str, str]:
    """Where timm fetches ``name``'s ImageNet weights from, and the cache it keeps them in."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.hf_hub_id:
        from huggingface_hub.constants import HF_HUB_CACHE

        return f"{cfg.hf_hub_id} on the Hugging Face hub", HF_HUB_CACHE
    url = cfg.url if cfg is not None and cfg.url else "timm's release files"
    return url, str(Path(torch.hub.get_dir()) / "checkpoints")


def _check_file_covers(encoder: nn.Module, path: str, name: str) -> None:
    """Every backbone tensor must come from the file.

    timm loads a features_only backbone non-strictly (it drops the classifier), so the weights
    of a smaller sibling (resnet18 for resnet34) would load silently and leave layers random.
    """
    # timm's feature wrappers flatten nested Sequentials, turning "stages.0" into "stages_0".
    have = {key.replace(".", "_") for key in timm.models.load_state_dict(path)}
    missing = [
        key
        for key in encoder.state_dict()
        if key.replace(".", "_") not in have and not key.endswith("num_batches_tracked")
    ]
    if missing:
        raise ConfigError(
            f"pretrained_file {path!r} lacks {len(missing)} of the {name!r} backbone's tensors "
            f"(first: {missing[0]}); it must hold timm ImageNet weights for {name!r}"
        )


def init_weights(module: nn.Module, *heatmap_convs: nn.Conv2d) -> None:
    """He init for the convolutions of ``module``; heatmap convs start near zero, bias 0.

    A near-zero first prediction keeps the initial loss close to the all-background value, so
    the first steps (at the warm-up's learning rate) do not blow up.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for conv in heatmap_convs:
        nn.init.normal_(conv.weight, std=0.001)
        nn.init.zeros_(conv.bias)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UpsampleHead(nn.Module):
    """Stride-4 features to heatmaps at stride 2 or 1 (``heatmap_stride``).

    Each x2 step is a pixel shuffle (a 3x3 conv to 4 x ``width`` channels, rearranged to twice
    the resolution) whose output is concatenated with a skip at the new stride, then a 3x3 conv
    + BN + ReLU; a 1x1 conv gives the K heatmaps. The skips are the shallowest features there
    are: a 3x3 conv of the input image itself at stride 2 (and 1), so that the fine maps see
    the edges that the stride-4 features have averaged away.
    """

    def __init__(self, cin: int, num_landmarks: int, stride: int, width: int = 32) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"UpsampleHead is for strides 2 and 1, got {stride}")
        steps = {2: (2,), 1: (2, 1)}[stride]  # the stride after each x2 step
        self.ups = nn.ModuleList()
        self.skips = nn.ModuleList()
        self.fuse = nn.ModuleList()
        c = cin
        for to in steps:
            self.ups.append(
                nn.Sequential(nn.Conv2d(c, 4 * width, 3, padding=1), nn.PixelShuffle(2))
            )
            self.skips.append(_conv_bn_relu(1, width, stride=to))
            self.fuse.append(_conv_bn_relu(2 * width, width))
            c = width
        self.out = nn.Conv2d(width, num_landmarks, kernel_size=1)

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = features
        for up, skip, fuse in zip(self.ups, self.skips, self.fuse, strict=True):
            x = up(x)
            s = skip(image)
            x = fuse(torch.cat([x, s[..., : x.shape[-2], : x.shape[-1]]], dim=1))
        return self.out(x)


def heatmap_layer(cin: int, num_landmarks: int, stride: int) -> nn.Module:
    """The layer that turns a model's stride-4 features into heatmaps at ``stride``: a 1x1 conv
    at stride 4 (as before strides were offered), an ``UpsampleHead`` at 2 or 1."""
    if stride == 4:
        return nn.Conv2d(cin, num_landmarks, kernel_size=1)
    if stride in (1, 2):
        return UpsampleHead(cin, num_landmarks, stride)
    raise ConfigError(f"heatmap_stride must be one of 4, 2, 1, got {stride!r}")


def to_heatmaps(layer: nn.Module, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Apply a ``heatmap_layer`` (an ``UpsampleHead`` also takes the input image)."""
    return layer(features, image) if isinstance(layer, UpsampleHead) else layer(features)


def last_conv(layer: nn.Module) -> nn.Conv2d:
    """The conv of a ``heatmap_layer`` that outputs the heatmaps (initialised near zero)."""
    return layer.out if isinstance(layer, UpsampleHead) else layer
