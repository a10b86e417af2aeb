"""The trainable's configuration: every key a search space may set, with its type and default."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any

from trainables.data.formats import FORMATS
from trainables.data.records import ANNOTATOR_CHOICES
from trainables.errors import ConfigError
from trainables.eval.metrics import SDR_THRESHOLDS_MM, sdr_key
from trainables.losses import LOSSES
from trainables.models import MODELS, get_model
from trainables.progressive import Stages, canonical_stages, stages_rule
from trainables.shape import STRIDES, Size, canonical, size_rule

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
TRAIN_ON = ("train", "train+valid")
# The valid metrics a run can keep its best epoch by (``best_metric``): what every epoch reports.
BEST_METRICS = ("mre_mm", "mre_sd_mm", "train_loss", *(sdr_key(t) for t in SDR_THRESHOLDS_MM))
# Reported every epoch: epochs trained since the warmup ended (0 during it). ASHA's rungs count
# this, so that a rung never compares a trial still ramping its learning rate with one past it.
EPOCHS_AFTER_WARMUP = "epochs_after_warmup"
# Named settings: the registries that own the names (none of them imports torch, so the driver
# checks a space or study file against them).
CHOICES: dict[str, tuple[str, ...]] = {
    "model": tuple(sorted(MODELS)),
    "loss": tuple(sorted(LOSSES)),
    "dataset_format": tuple(sorted(FORMATS)),
    "annotator": ANNOTATOR_CHOICES,
    "precision": PRECISIONS,
    "train_on": TRAIN_ON,
    "best_metric": BEST_METRICS,
    "best_mode": ("min", "max"),
}
# What a run resolved that its config leaves open (``precision: auto``, the device): reported
# as text with every epoch's metrics (MLflow tags) and saved with every checkpoint.
RESOLVED_KEYS = ("precision", "device")
POSITIVE = frozenset(
    {
        "lr",
        "batch_size",
        "epochs",
        "num_threads",
        "aw_epsilon",
        "aw_theta",
        "t0_epochs",
        "t_mult",
        "hourglass_stacks",
        "sigma",
        "cpu_memory_gb",
    }
)
# Keys whose values are image sizes: an int N (square), [W, H] or "WxH" (``trainables.shape``);
# their type is ``int | Size``, so that an int range can search them.
SIZE_KEYS = frozenset({"image_size"})
NON_NEGATIVE = frozenset(
    {
        "warmup_epochs",
        "eta_min",
        "weight_decay",
        "checkpoint_every",
        "num_workers",
        "aug_rotation_deg",
        "aug_scale",
        "aug_translate",
        "aug_brightness",
        "aug_contrast",
        "aug_gamma",
    }
)


def value_rule(key: str, value: Any) -> str | None:
    """The rule ``value`` breaks as trainable setting ``key`` (e.g. ``must be > 0, got 0.0``),
    or None. Types are ``coerce``'s business; None (an optional's default) breaks no rule."""
    if value is None:
        return None
    if key in POSITIVE and not value > 0:
        return f"must be > 0, got {value}"
    if key in NON_NEGATIVE and value < 0:
        return f"must be >= 0, got {value}"
    if key in SIZE_KEYS:
        return size_rule(value)
    if key == "progressive_stages":
        return stages_rule(value)
    if key == "heatmap_stride" and value not in STRIDES:
        return f"must be one of {', '.join(map(str, STRIDES))}, got {value}"
    if key in CHOICES and value not in CHOICES[key]:
        return f"must be one of {', '.join(CHOICES[key])}, got {value!r}"
    return None


@dataclass
class TrainConfig:
    """One trial's resolved settings. Defaults follow the guides' "balanced" configuration."""

    # data
    data_dir: str = ""
    dataset_format: str = "aariz"  # aariz | isbi (synthetic data is written in the Aariz layout)
    synthetic: str | None = None  # SynthSpec key when data_dir is generated data: regenerated
    # there if the folder is gone (the user cleared the cache folder it lives in mid-study)
    annotator: str = "mean"  # senior | junior | mean
    cache_dir: str | None = None  # shared preprocessing cache; None = the user cache dir
    num_workers: int | None = None  # DataLoader worker processes; None = auto (see workers())
    train_on: str = "train"  # train | train+valid (a final model may learn from both)
    augment: bool = True  # train split only
    aug_rotation_deg: float = 5.0
    aug_scale: float = 0.05  # +- relative scale
    aug_translate: float = 0.03  # +- fraction of the image size
    aug_brightness: float = 0.1
    aug_contrast: float = 0.1
    aug_gamma: float = 0.1
    aug_flip: bool = False  # mirror x with p = 0.5 (the landmarks are midline or bilateral means)
    # model
    model: str = "hrnet"  # hrnet | resnet | unet | hourglass
    backbone: str | None = None  # model-specific variant; None = the model's default
    hourglass_stacks: int = 2
    heatmap_stride: int = 4  # 4 | 2 | 1: heatmaps at 1/stride of the input (an upsampling head)
    pretrained: bool = False
    pretrained_file: str | None = None  # local ImageNet weights for the backbone
    # loss
    loss: str = "adaptive_wing"
    aw_omega: float = 14.0
    aw_theta: float = 0.5
    aw_epsilon: float = 1.0
    aw_alpha: float = 2.1
    aw_weight: float = 10.0
    aw_weight_map: bool = True
    sigma: float | None = None  # heatmap pixels at stride 4 (scaled by 4 / heatmap_stride);
    # None = the guides' adaptive sigma for the input's long side
    # optimisation
    lr: float = 5e-4
    weight_decay: float = 1e-4
    batch_size: int = 12
    epochs: int = 100
    warmup_epochs: int = 5
    t0_epochs: int = 10  # cosine warm restarts: first cycle length
    t_mult: int = 2  # cycle length multiplier
    eta_min: float = 1e-6
    image_size: int | Size = 256  # N (square), [W, H] or "WxH": multiples of 32, <= 1024
    progressive_stages: Stages | None = None  # [[epochs, size], ...] or "E@S,E@S": lower
    # input sizes first, then image_size (trainables.progressive)
    precision: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    checkpoint_every: int = 5  # epochs between checkpoints, and the last (0 = never)
    best_metric: str = "mre_mm"  # the valid metric best.pt keeps the best epoch by (promote
    # writes its study's metric and mode; trainables.artifacts.CheckpointPolicy)
    best_mode: str | None = None  # min | max; None = the metric's own (max for sdr_*)
    num_threads: int = 1
    cpu_memory_gb: float | None = None  # address space (GiB) the epochs may add to the built run
    # (RLIMIT_AS, trainables.memory); None = no cap
    seed: int = 0

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build and validate; unknown keys and wrong types raise ``ConfigError``."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            hint = difflib.get_close_matches(str(unknown[0]), known, n=1)
            tip = f" (did you mean {hint[0]!r}?)" if hint else f"; known: {', '.join(known)}"
            raise ConfigError(f"{where}: unknown trainable key {unknown[0]!r}{tip}")
        kwargs = {
            name: coerce(where, name, value, known[name].type) for name, value in values.items()
        }
        cfg = cls(**kwargs)
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "config") -> None:
        """Every key's rule (``value_rule``); the first broken one raises ``ConfigError``."""
        for key, value in self.to_dict().items():
            rule = value_rule(key, value)
            if rule:
                raise ConfigError(f"{where}: {key} {rule}")
        rule = get_model(self.model).backbone_rule(self.backbone)
        if rule:
            raise ConfigError(f"{where}: backbone {rule}")

    def workers(self, cuda: bool) -> int:
        """DataLoader workers: as configured, else none on CPU (the step dominates and a worker
        competes with the trial's threads; measured in benchmarks/data_pipeline.py) and up to 4
        on CUDA, one per CPU of the trial, so that augmentation overlaps the GPU step."""
        if self.num_workers is not None:
            return self.num_workers
        return min(4, self.num_threads) if cuda else 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_type(name: str) -> str:
    return {f.name: f.type for f in dataclasses.fields(TrainConfig)}[name]


def coerce(where: str, key: str, value: Any, type_name: str) -> Any:
    """Check ``value`` against a dataclass field's type annotation; ints pass as floats."""
    if "Size" in type_name.split("|")[-1]:
        size = canonical(value)
        if size is None:
            raise ConfigError(f"{where}: {key} must be an int, [W, H] or 'WxH', got {value!r}")
        return size
    if type_name.startswith("Stages"):
        stages = None if value is None else canonical_stages(value)
        if value is not None and stages is None:
            raise ConfigError(
                f"{where}: {key} must be [[epochs, size], ...] or 'E@SIZE,E@SIZE', got {value!r}"
            )
        return stages or None
    optional = type_name.endswith("| None")
    base = type_name.split("|")[0].strip()
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: {key} must be a {base}, got null")
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }[base]
    if not ok:
        hint = ""
        if isinstance(value, str) and base in ("int", "float") and is_numeric_text(value):
            hint = " (a string: YAML reads 1e-4 as text, write 1.0e-4)"
        raise ConfigError(f"{where}: {key} must be a {base}, got {value!r}{hint}")
    if base == "float":
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be finite, got {value}")
    return value


def is_numeric_text(text: str) -> bool:
    """A string YAML left as text that reads as a number (``1e-4``: YAML 1.1 wants a dot)."""
    try:
        float(text)
    except ValueError:
        return False
    return True
