"""The trainable's configuration: every key a search space may set, declared once with its type,
range, choices, default and meaning (the README's key table is generated from it:
``python -m trainables.config_table``); the rules between keys are ``trainables.key_rules``.

A ``TrainConfig`` is checked when it is made: a bad value or a backbone its model cannot take
is one ``ConfigError`` line (``cfg.yaml: lr must be > 0, got 0.0``) before anything is built.
A space checks its values against the same declarations (``trainables.setting``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from trainables.data.formats import FORMATS
from trainables.data.records import ANNOTATOR_CHOICES, TRAIN_ON
from trainables.errors import ConfigError
from trainables.eval.metrics import SDR_THRESHOLDS_MM, sdr_key
from trainables.key_rules import KEY_RULES
from trainables.losses import LOSSES
from trainables.models import MODELS
from trainables.progressive import Stages
from trainables.schema import STRICT, Shown, Why, explain, rule_error, unknown_key
from trainables.shape import STRIDES, Size

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# The valid metrics a run can keep its best epoch by (``best_metric``): what every epoch reports.
BEST_METRICS = ("mre_mm", "mre_sd_mm", "train_loss", *(sdr_key(t) for t in SDR_THRESHOLDS_MM))
# Reported every epoch: epochs trained since the warmup ended (0 during it). ASHA's rungs count
# this, so that a rung never compares a trial still ramping its learning rate with one past it.
EPOCHS_AFTER_WARMUP = "epochs_after_warmup"
# What a run resolved that its config leaves open (``precision: auto``, the device): reported
# as text with every epoch's metrics (MLflow tags) and saved with every checkpoint.
RESOLVED_KEYS = ("precision", "device")


def _names(names: Any) -> Any:
    """The settings named by a registry (none imports torch, so the driver checks names)."""
    return Literal[tuple(names)]


def _doc(meaning: str, **constraints: Any) -> Any:
    return Field(description=meaning, **constraints)


Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
AW = "Adaptive Wing parameters (Wang et al., ICCV 2019)"
AW_WEIGHT = "loss × (W·M + 1), M = 3×3-dilated target > 0.2"
ADAMW = "AdamW"
BUDGET = "samples per step, epochs of a run (a study sets `epochs` to its `max_epochs`)"
COSINE = "cosine annealing with warm restarts after the warmup"
WARP = "± degrees, ± relative scale, ± fraction of the image size"
JITTER = "intensity jitter strengths"


class TrainConfig(BaseModel):
    """One trial's resolved settings. Defaults follow the guides' "balanced" configuration."""

    model_config = STRICT

    model: Annotated[
        _names(sorted(MODELS)), _doc("`hrnet` | `resnet` | `unet` | `hourglass` (table below)")
    ] = "hrnet"
    backbone: Annotated[
        str | None,
        Shown("null (the model's default)"),
        _doc(
            "variant: `hrnet_w18_small`, `hrnet_w18_small_v2`, `hrnet_w18`, `hrnet_w32`, "
            "`hrnet_w48`; `resnet18/34/50` for `resnet`; any timm model with stride-4…32 features "
            "for `unet` (default `resnet34`); must be null for `hourglass`"
        ),
    ] = None
    hourglass_stacks: Annotated[int, _doc("stacks of the hourglass (each is supervised)", gt=0)] = 2
    heatmap_stride: Annotated[
        Literal[STRIDES],
        _doc(
            "4 | 2 | 1, for every model: heatmaps at 1/stride of the input. Below 4 an upsampling "
            "head (pixel shuffle, x2 per step, each step fused with a 3×3-conv skip from the input "
            "image at that stride) replaces the last 1×1 conv; sigma follows the stride; decoding "
            "is the same"
        ),
    ] = 4
    pretrained: Annotated[
        bool,
        _doc("ImageNet weights through timm (needs its hub cache or network); not for `hourglass`"),
    ] = False
    pretrained_file: Annotated[
        str | None,
        _doc("local weights file for the backbone (checked to cover every backbone tensor)"),
    ] = None
    loss: Annotated[_names(sorted(LOSSES)), _doc("`adaptive_wing` | `heatmap` (MSE)")] = (
        "adaptive_wing"
    )
    aw_omega: Annotated[float, _doc(AW)] = 14.0
    aw_theta: Annotated[Positive, _doc(AW)] = 0.5
    aw_epsilon: Annotated[Positive, _doc(AW)] = 1.0
    aw_alpha: Annotated[float, _doc(AW, gt=1), Why(" (alpha - y is the exponent)")] = 2.1
    aw_weight: Annotated[float, _doc(AW_WEIGHT)] = 10.0
    aw_weight_map: Annotated[bool, _doc(AW_WEIGHT)] = True
    sigma: Annotated[
        Positive | None,
        Shown("null = 1.5 × long side / 256 × 4 / heatmap_stride"),
        _doc(
            "Gaussian target sigma in heatmap pixels at stride 4 (0.75 / 1.5 / 3.0 at 128 / 256 / "
            "512 px), scaled by 4 / `heatmap_stride`, so that the target keeps its width in input "
            "pixels at any stride (a set value is read at stride 4 too)"
        ),
    ] = None
    lr: Annotated[Positive, _doc(ADAMW)] = 5e-4
    weight_decay: Annotated[NonNegative, _doc(ADAMW)] = 1e-4
    batch_size: Annotated[int, _doc(BUDGET, gt=0)] = 12
    epochs: Annotated[int, _doc(BUDGET, gt=0)] = 100
    warmup_epochs: Annotated[int, _doc("linear warmup, stepped per iteration", ge=0)] = 5
    t0_epochs: Annotated[int, _doc(COSINE, gt=0)] = 10
    t_mult: Annotated[int, _doc(COSINE, gt=0)] = 2
    eta_min: Annotated[NonNegative, _doc(COSINE)] = 1e-6
    image_size: Annotated[
        Size,
        _doc(
            'network input: `N` (square), `[W, H]` or `"WxH"` (a space\'s categorical names '
            'rectangles as text, `"512x640"`); each side a multiple of 32, at most 1024. Images '
            "are scaled to fit, aspect kept, and padded only on the side the input's aspect leaves "
            "over (a 512 × 640 input takes a 1935 × 2400 cephalogram almost without padding). "
            "Metrics stay in original pixels × mm"
        ),
    ] = Size(256, 256)
    progressive_stages: Annotated[
        Stages | None,
        _doc(
            'progressive resolution: `[[epochs, size], …]` or the same as text, `"3@256,3@512"` '
            "(a space's categorical names them as text): the stages run first, in order, then "
            "`image_size` until `epochs`. Weights, optimiser and schedule carry over; the heatmap "
            "stride stays, sigma follows each stage's size; each epoch reports its `input_px` (the "
            "long side). Early epochs, and so early ASHA rungs, are cheap: resolution becomes a "
            "fidelity"
        ),
    ] = None
    precision: Annotated[
        _names(PRECISIONS),
        _doc(
            "`auto`: on CUDA bf16 where the GPU has it natively (compute capability ≥ 8.0: A100, "
            "H100, RTX 30xx+), else fp16 + GradScaler; fp32 on CPU | `fp32` | `fp16` (CUDA only) | "
            "`bf16` (refused on a GPU without native bf16, where it would run emulated and slow; "
            "allowed on CPU)"
        ),
    ] = "auto"
    train_on: Annotated[
        _names(TRAIN_ON),
        _doc("`train` | `train+valid` (the split(s) the model learns from; promotion option)"),
    ] = "train"
    augment: Annotated[
        bool,
        _doc(
            "train split only: one affine warp (rotation, scale, translation) for image and "
            "landmarks, then brightness / contrast / gamma"
        ),
    ] = True
    aug_flip: Annotated[
        bool,
        _doc(
            "with `augment`: mirror x with probability 0.5 (cephalograms face either way). Only x "
            "mirrors: every landmark is on the midline or the mean of a bilateral pair "
            "(FORMATS.md), so no two landmarks swap names"
        ),
    ] = False
    aug_rotation_deg: Annotated[NonNegative, _doc(WARP)] = 5.0
    aug_scale: Annotated[NonNegative, _doc(WARP, lt=1)] = 0.05
    aug_translate: Annotated[NonNegative, _doc(WARP)] = 0.03
    aug_brightness: Annotated[NonNegative, _doc(JITTER, lt=1)] = 0.1
    aug_contrast: Annotated[NonNegative, _doc(JITTER, lt=1)] = 0.1
    aug_gamma: Annotated[NonNegative, _doc(JITTER)] = 0.1
    num_workers: Annotated[
        int | None,
        Shown("null = auto"),
        _doc(
            "DataLoader worker processes; auto: 0 on CPU (the step dominates and a worker only "
            "competes for the trial's cores), min(4, the trial's CPUs) on CUDA",
            ge=0,
        ),
    ] = None
    cpu_memory_gb: Annotated[
        Positive | None,
        Shown("null = no cap"),
        _doc(
            "address space (GiB) the training epochs may add to the built run (`RLIMIT_AS` of the "
            "trial's process, lifted afterwards): a configuration too large for the machine fails "
            "fast as `oom: …` instead of swapping or meeting the kernel's OOM killer"
        ),
    ] = None
    best_metric: Annotated[
        _names(BEST_METRICS),
        _doc(
            "the valid metric whose best epoch `best.pt` keeps (`promote` writes the study's "
            "`metric`)"
        ),
    ] = "mre_mm"
    best_mode: Annotated[
        Literal["min", "max"] | None,
        Shown("null = the metric's own"),
        _doc("`min` | `max`; null: max for `sdr_*`, min otherwise"),
    ] = None
    checkpoint_every: Annotated[
        int,
        _doc(
            "epochs between checkpoints, and always the last (0 = none); each one cost a tiny "
            "trial 0.17 s (benchmarks), a large model far more, and a resumed trial loses at most "
            "this many epochs",
            ge=0,
        ),
    ] = 5
    seed: Annotated[
        int,
        _doc(
            "Python, NumPy, torch, shuffling and augmentation (per epoch and image, so a resumed "
            "run continues exactly on CPU, loader workers or not; on a GPU see below)"
        ),
    ] = 0
    num_threads: Annotated[
        int, _doc("torch threads of a run (a study sets it from `resources.cpu`)", gt=0)
    ] = 1
    data_dir: Annotated[
        str, _doc("the dataset folder (relative to a training config; a study sets it)")
    ] = ""
    dataset_format: Annotated[
        _names(sorted(FORMATS)),
        _doc(
            "the dataset's reader: `aariz` | `isbi` (a study sets it; synthetic data is written in "
            "the Aariz layout)"
        ),
    ] = "aariz"
    annotator: Annotated[
        _names(ANNOTATOR_CHOICES),
        _doc(
            "the ground truth: `senior` | `junior` | `mean` (a study sets it from "
            "`dataset.annotator`)"
        ),
    ] = "mean"
    synthetic: Annotated[
        str | None,
        _doc(
            "the generator key of synthetic data: a trial regenerates `data_dir` there if the "
            "cache folder holding it was deleted mid-study (a study sets it)"
        ),
    ] = None
    cache_dir: Annotated[
        str | None,
        Shown("null = the user cache dir"),
        _doc("the shared preprocessing cache (a study sets it)"),
    ] = None

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise _Refused(explain(e, TrainConfig, "trainable")) from None

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build and check; an unknown key, a wrong type or a broken rule is a ``ConfigError``
        naming ``where``."""
        for key in values:
            if not isinstance(key, str):
                raise unknown_key(where, repr(key), cls.keys(), noun="trainable key")
        try:
            return cls(**values)
        except _Refused as e:
            raise ConfigError(f"{where}: {e.line}") from None

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)

    @model_validator(mode="after")
    def _key_rules(self) -> TrainConfig:
        for rule in KEY_RULES:
            broken = rule.check(getattr(self, rule.on), getattr(self, rule.key))
            if broken:
                raise rule_error(broken, key=rule.key)
        return self

    def size_at(self, epoch: int) -> Size:
        """The input size of ``epoch`` (1-based): its progressive stage's, else ``image_size``."""
        if self.progressive_stages is None:
            return self.image_size
        return self.progressive_stages.size_at(epoch, self.image_size)

    def workers(self, cuda: bool) -> int:
        """DataLoader workers: as configured, else none on CPU (the step dominates and a worker
        competes with the trial's threads; measured in benchmarks/data_pipeline.py) and up to 4
        on CUDA, one per CPU of the trial, so that augmentation overlaps the GPU step."""
        if self.num_workers is not None:
            return self.num_workers
        return min(4, self.num_threads) if cuda else 0

    def to_dict(self) -> dict[str, Any]:
        """The settings as a record holds them (sizes and stages as their text or int)."""
        return self.model_dump()


class _Refused(ConfigError):
    """A config refused when it was made; ``from_dict`` names its file instead of ``config``."""

    def __init__(self, line: str) -> None:
        super().__init__(f"config: {line}")
        self.line = line


DEFAULTS: dict[str, Any] = TrainConfig().to_dict()  # as a record holds them
