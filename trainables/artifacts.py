"""What a training run and a promotion leave behind, as types every side imports: a
checkpoint's file names and keys and which one is kept (``CheckpointPolicy``), the registered
model's metadata (``ModelMetadata``), the inside of a study's ``final/`` folder
(``FinalDir``) and its ``test_metrics.json`` (``TestMetrics``).

Torch-free (the driver and ``report`` import it); rebuilding a model from a checkpoint is
``trainables.checkpoint.rebuild``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainables.config import TRAIN_ON, TrainConfig
from trainables.data.formats import symbols
from trainables.errors import ConfigError
from trainables.shape import Size, sigma_for

# A run's checkpoint files: the best epoch by the policy's metric, and the latest epoch.
BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
# The keys of a checkpoint that another module reads (``trainables.run`` writes the training
# state, ``trainables.checkpoint.provenance`` the config); ``BEST`` is the best value so far of
# the policy's metric.
WEIGHTS = "model"
EPOCH = "epoch"
BEST = "best"
CONFIG = "config"
# The micro-batch a run trains with (its batch size until a step ran out of memory): saved, so
# that a resumed run does not run out again, and reported with every epoch's metrics.
MICRO_BATCH = "micro_batch"
GRAD_ACCUMULATION = "grad_accumulation"  # its passes per optimiser step, reported with it


def natural_mode(metric: str) -> str:
    """``max`` for detection rates (``sdr_*``), ``min`` for errors and losses."""
    return "max" if metric.startswith("sdr_") else "min"


@dataclass(frozen=True)
class CheckpointPolicy:
    """Which epoch ``best.pt`` keeps (the best ``metric`` on valid, in ``mode``) and which file
    a final model is tested from (the last epoch once valid is trained on)."""

    metric: str = "mre_mm"
    mode: str = "min"
    train_on: str = "train"

    @classmethod
    def of(cls, cfg: TrainConfig) -> CheckpointPolicy:
        """A config's policy: ``best_metric`` in ``best_mode`` (default: the metric's own)."""
        return cls(cfg.best_metric, cfg.best_mode or natural_mode(cfg.best_metric), cfg.train_on)

    def value(self, metrics: dict[str, Any]) -> float:
        return float(metrics[self.metric])

    def improves(self, metrics: dict[str, Any], best: float | None) -> bool:
        """Whether an epoch's ``metrics`` beat ``best`` (None: nothing kept yet); a tie keeps
        the earlier epoch."""
        if best is None:
            return True
        value = self.value(metrics)
        return value > best if self.mode == "max" else value < best

    @property
    def tested(self) -> str:
        """The checkpoint a final model is tested and registered from: selection on valid is
        meaningless once valid is trained on, so the last epoch then."""
        return LAST_CHECKPOINT if self.train_on == TRAIN_ON[1] else BEST_CHECKPOINT


@dataclass(frozen=True)
class MemberMetadata:
    """One ensemble member: it letterboxes the image at its own size and decodes at its own
    stride; test-time augmentation mirrors only for a member trained with ``aug_flip``."""

    image_size: int | str  # as a record holds a size (``Size.value``)
    stride: int
    aug_flip: bool


@dataclass(frozen=True)
class ModelMetadata:
    """A registered model's preprocessing (the MLflow model's ``metadata``): what ``predict``
    and serving need to turn an image into landmarks in original pixels."""

    REQUIRED = ("image_size", "symbols", "stride")

    image_size: int | str  # as a record holds a size (``Size.value``)
    symbols: tuple[str, ...]  # the landmarks, in output order
    stride: int
    dataset_format: str | None = None
    annotator: str | None = None
    sigma: float | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the model's full trainable config
    ensemble: tuple[MemberMetadata, ...] | None = None

    @property
    def precision(self) -> str:
        """The precision the model trained and was validated in, as its config asked for it
        (``Precision.for_inference`` resolves it where the model runs)."""
        return str(self.config.get("precision", "auto"))

    @classmethod
    def describe(cls, model: Any, cfg: TrainConfig) -> ModelMetadata:
        """The metadata of ``model`` (an ``nn.Module`` with its ``stride``, or an ``Ensemble``)
        trained with ``cfg``."""
        from trainables.eval.ensemble import Ensemble  # torch: only where a model exists

        stride = int(model.stride)
        members = None
        if isinstance(model, Ensemble):
            members = tuple(
                MemberMetadata(Size.parse(size).value, int(member.stride), flip)
                for member, size, flip in model.parts()
            )
        return cls(
            image_size=cfg.image_size.value,
            symbols=tuple(symbols(cfg.dataset_format, cfg.data_dir)),
            stride=stride,
            dataset_format=cfg.dataset_format,
            annotator=cfg.annotator,
            sigma=sigma_for(cfg.sigma, cfg.image_size, stride),
            config=cfg.to_dict(),
            ensemble=members,
        )

    @classmethod
    def from_dict(cls, meta: dict[str, Any] | None, uri: str) -> ModelMetadata:
        """The metadata of the model at ``uri``; one without the required keys is not
        cephtune's (a ``ConfigError``)."""
        meta = dict(meta or {})
        missing = [k for k in cls.REQUIRED if k not in meta]
        if missing:
            raise ConfigError(
                f"model {uri!r} is not a cephtune landmark model (metadata lacks {missing})"
            )
        members = meta.get("ensemble")
        return cls(
            image_size=meta["image_size"],
            symbols=tuple(meta["symbols"]),
            stride=int(meta["stride"]),
            dataset_format=meta.get("dataset_format"),
            annotator=meta.get("annotator"),
            sigma=meta.get("sigma"),
            config=dict(meta.get("config") or {}),
            ensemble=tuple(
                MemberMetadata(m["image_size"], int(m["stride"]), bool(m.get("aug_flip", False)))
                for m in members
            )
            if members
            else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for MLflow (lists, not tuples: the MLmodel file is YAML)."""
        out = asdict(self)
        out["symbols"] = list(self.symbols)
        out["ensemble"] = [asdict(m) for m in self.ensemble] if self.ensemble else None
        return out

    @property
    def aug_flip(self) -> bool:
        """Whether the model was trained on mirrored images (test-time augmentation mirrors
        only then)."""
        return bool(self.config.get("aug_flip", False))


@dataclass(frozen=True)
class FinalDir:
    """``studies/NAME/final/``: what ``promote`` writes and ``report`` and the registry read."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        """The final run's checkpoint folder (``best.pt``, ``last.pt``)."""
        return self.root / "checkpoints"

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / name

    @property
    def last(self) -> Path:
        return self.checkpoint(LAST_CHECKPOINT)

    @property
    def test_metrics(self) -> Path:
        return self.root / "test_metrics.json"

    @property
    def tables(self) -> tuple[Path, Path]:
        """The per-landmark table as CSV and as Markdown."""
        return self.root / "per_landmark.csv", self.root / "per_landmark.md"

    @property
    def overlays(self) -> Path:
        return self.root / "overlays"

    def overlay(self, label: str, ceph_id: str) -> Path:
        return self.overlays / f"{label}_{ceph_id}.png"


@dataclass(frozen=True)
class TestMetrics:
    """``test_metrics.json``: the promoted model's one test, flat in the file: the summary
    (``mre_mm``, ``mre_sd_mm``, ``sdr_*``, ``missing_landmarks``), the image count, the
    test-time augmentation, the per-landmark table, the selection report of ``--trials`` /
    ``--seeds``, the trials of an ensemble, and what was registered from which checkpoint."""

    __test__ = False  # not a pytest class, whatever its name

    scores: dict[str, float]
    images: int | None = None
    tta: str = "none"
    per_landmark: dict[str, dict[str, Any]] = field(default_factory=dict)
    selection: dict[str, Any] | None = None
    ensemble: list[int] | None = None
    model_uri: str | None = None
    alias: str | None = None
    checkpoint: str | None = None
    epochs: int | None = None  # the schedule the final run trained (an ensemble: none)
    tested_epoch: int | None = None  # the epoch of ``checkpoint``

    _FIELDS = ("images", "tta", "per_landmark", "selection", "ensemble", "model_uri", "alias",
               "checkpoint", "epochs", "tested_epoch")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.scores)
        for key in self._FIELDS:
            value = getattr(self, key)
            if value is not None or key not in ("selection", "ensemble", "epochs", "tested_epoch"):
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestMetrics:
        """As read back: any key may be missing (an older or hand-written file)."""
        rest = {k: data[k] for k in cls._FIELDS if k in data}
        return cls({k: v for k, v in data.items() if k not in cls._FIELDS}, **rest)

    def write(self, final: FinalDir) -> Path:
        final.root.mkdir(parents=True, exist_ok=True)
        final.test_metrics.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True))
        return final.test_metrics

    @classmethod
    def read(cls, final: FinalDir) -> TestMetrics | None:
        """The test results in ``final``; None before a promotion. A file that is not a JSON
        object is a ``ConfigError`` naming it."""
        path = final.test_metrics
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the test metrics ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must hold a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)
