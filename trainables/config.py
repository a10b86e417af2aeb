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

from trainables.config_meaning import MEANING
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

    model: Annotated[_names(sorted(MODELS)), _doc(MEANING["model"])] = "hrnet"
    backbone: Annotated[
        str | None,
        Shown("null (the model's default)"),
        _doc(MEANING["backbone"]),
    ] = None
    hourglass_stacks: Annotated[int, _doc(MEANING["hourglass_stacks"], gt=0)] = 2
    heatmap_stride: Annotated[
        Literal[STRIDES],
        _doc(MEANING["heatmap_stride"]),
    ] = 4
    pretrained: Annotated[
        bool,
        _doc(MEANING["pretrained"]),
    ] = False
    pretrained_file: Annotated[
        str | None,
        _doc(MEANING["pretrained_file"]),
    ] = None
    loss: Annotated[_names(sorted(LOSSES)), _doc(MEANING["loss"])] = "adaptive_wing"
    aw_omega: Annotated[float, _doc(AW)] = 14.0
    aw_theta: Annotated[Positive, _doc(AW)] = 0.5
    aw_epsilon: Annotated[Positive, _doc(AW)] = 1.0
    aw_alpha: Annotated[float, _doc(AW, gt=1), Why(" (alpha - y is the exponent)")] = 2.1
    aw_weight: Annotated[float, _doc(AW_WEIGHT)] = 10.0
    aw_weight_map: Annotated[bool, _doc(AW_WEIGHT)] = True
    sigma: Annotated[
        Positive | None,
        Shown("null = 1.5 × long side / 256 × 4 / heatmap_stride"),
        _doc(MEANING["sigma"]),
    ] = None
    lr: Annotated[Positive, _doc(ADAMW)] = 5e-4
    weight_decay: Annotated[NonNegative, _doc(ADAMW)] = 1e-4
    batch_size: Annotated[int, _doc(BUDGET, gt=0)] = 12
    epochs: Annotated[int, _doc(BUDGET, gt=0)] = 100
    warmup_epochs: Annotated[int, _doc(MEANING["warmup_epochs"], ge=0)] = 5
    t0_epochs: Annotated[int, _doc(COSINE, gt=0)] = 10
    t_mult: Annotated[int, _doc(COSINE, gt=0)] = 2
    eta_min: Annotated[NonNegative, _doc(COSINE)] = 1e-6
    image_size: Annotated[
        Size,
        _doc(MEANING["image_size"]),
    ] = Size(256, 256)
    progressive_stages: Annotated[
        Stages | None,
        _doc(MEANING["progressive_stages"]),
    ] = None
    precision: Annotated[
        _names(PRECISIONS),
        _doc(MEANING["precision"]),
    ] = "auto"
    train_on: Annotated[
        _names(TRAIN_ON),
        _doc(MEANING["train_on"]),
    ] = "train"
    augment: Annotated[
        bool,
        _doc(MEANING["augment"]),
    ] = True
    aug_flip: Annotated[
        bool,
        _doc(MEANING["aug_flip"]),
    ] = False
    aug_rotation_deg: Annotated[NonNegative, _doc(WARP)] = 5.0
    aug_scale: Annotated[NonNegative, _doc(WARP, lt=1)] = 0.05
    aug_translate: Annotated[NonNegative, _doc(WARP)] = 0.03
    aug_brightness: Annotated[NonNegative, _doc(JITTER, lt=1)] = 0.1
    aug_contrast: Annotated[NonNegative, _doc(JITTER, lt=1)] = 0.1
    aug_gamma: Annotated[NonNegative, _doc(JITTER)] = 0.1
    compile: Annotated[bool, _doc(MEANING["compile"])] = False
    num_workers: Annotated[
        int | None,
        Shown("null = auto"),
        _doc(
            MEANING["num_workers"],
            ge=0,
        ),
    ] = None
    cpu_memory_gb: Annotated[
        Positive | None,
        Shown("null = no cap"),
        _doc(MEANING["cpu_memory_gb"]),
    ] = None
    best_metric: Annotated[
        _names(BEST_METRICS),
        _doc(MEANING["best_metric"]),
    ] = "mre_mm"
    best_mode: Annotated[
        Literal["min", "max"] | None,
        Shown("null = the metric's own"),
        _doc(MEANING["best_mode"]),
    ] = None
    checkpoint_every: Annotated[
        int,
        _doc(
            MEANING["checkpoint_every"],
            ge=0,
        ),
    ] = 5
    seed: Annotated[
        int,
        _doc(MEANING["seed"]),
    ] = 0
    num_threads: Annotated[int, _doc(MEANING["num_threads"], gt=0)] = 1
    data_dir: Annotated[str, _doc(MEANING["data_dir"])] = ""
    dataset_format: Annotated[
        _names(sorted(FORMATS)),
        _doc(MEANING["dataset_format"]),
    ] = "aariz"
    annotator: Annotated[
        _names(ANNOTATOR_CHOICES),
        _doc(MEANING["annotator"]),
    ] = "mean"
    synthetic: Annotated[
        str | None,
        _doc(MEANING["synthetic"]),
    ] = None
    cache_dir: Annotated[
        str | None,
        Shown("null = the user cache dir"),
        _doc(MEANING["cache_dir"]),
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
        competes with the trial's threads; measured in benchmarks/data_pipeline.py) and on CUDA
        the trial's CPUs less one (the training process's), so that loading overlaps the GPU
        step. A worker reads cached bytes and draws the augmentation; the warp runs on the GPU."""
        if self.num_workers is not None:
            return self.num_workers
        return max(0, self.num_threads - 1) if cuda else 0

    def to_dict(self) -> dict[str, Any]:
        """The settings as a record holds them (sizes and stages as their text or int)."""
        return self.model_dump()


class _Refused(ConfigError):
    """A config refused when it was made; ``from_dict`` names its file instead of ``config``."""

    def __init__(self, line: str) -> None:
        super().__init__(f"config: {line}")
        self.line = line


DEFAULTS: dict[str, Any] = TrainConfig().to_dict()  # as a record holds them
