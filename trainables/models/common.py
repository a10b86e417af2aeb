"""What the landmark models share: timm encoders with optional ImageNet weights, head init."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
from torch import nn

from trainables.errors import ConfigError, first_line


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
        encoder = build(pretrained=True)
    except Exception as err:
        # Download, file, hub and checkpoint-format errors have no common base class.
        if overlay:
            source = f"pretrained_file {cfg.pretrained_file!r}"
            hint = f"pretrained_file must hold timm ImageNet weights for {name!r}"
        else:
            source = "the timm hub"
            hint = "without network, download them elsewhere and set pretrained_file to the file"
        raise ConfigError(
            f"could not load pretrained weights for {name!r} from {source} "
            f"({first_line(err, with_type=True)}); {hint}, or set pretrained: false"
        ) from err
    if overlay:
        _check_file_covers(encoder, overlay["file"], name)
    return encoder


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
