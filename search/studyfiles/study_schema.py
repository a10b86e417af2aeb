"""The schema of a study file (``studies/*.yaml``): its keys, their types, ranges and defaults,
and the rules between them (a mode that fits the metric, a first rung inside ``max_epochs``).
Published as ``studies/study.schema.json`` (``python -m search.studyfiles.schema``). What a study
needs of other files (its space, the space's warmup) is ``search.studyfiles.study``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from search.layout import DEFAULT_STORAGE
from search.studyfiles.asha import AshaFile
from search.studyfiles.samplers import Sampler
from trainables.data.formats import FORMATS
from trainables.data.records import ANNOTATOR_CHOICES
from trainables.eval.metrics import SDR_THRESHOLDS_MM, sdr_key
from trainables.schema import STRICT, Rule, Why, rule_error

METRICS = ("mre_mm", "mre_sd_mm", "train_loss", *(sdr_key(t) for t in SDR_THRESHOLDS_MM))
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
NAME_RULE = (
    "must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit "
    "(no path separators)"
)


@dataclass(frozen=True)
class DatasetSpec:
    """A study's dataset, resolved (``root`` absolute); a folder dataset keeps the synthetic
    defaults, which it does not use."""

    format: str
    annotator: str = "mean"
    root: str | None = None
    n: int = 100
    size: tuple[int, int] = (386, 480)
    seed: int = 0

    @property
    def loader_format(self) -> str:
        """The reader of the files: synthetic data is written in the Aariz layout."""
        return "aariz" if self.format == "synthetic" else self.format


@dataclass(frozen=True)
class Resources:
    """What one trial holds; ``autoscaling``: the cluster adds nodes, so none need hold a
    trial when the study starts."""

    cpu: float
    gpu: float
    autoscaling: bool


class _File(BaseModel):
    model_config = STRICT


NonEmpty = Annotated[str, Field(min_length=1)]
Annotator = Annotated[
    Literal[ANNOTATOR_CHOICES], Field(description="the ground truth: one annotator or the mean")
]


class SyntheticDataset(_File):
    format: Literal["synthetic"]
    annotator: Annotator = DatasetSpec.annotator
    n: Annotated[int, Field(ge=3, description="images (70/15/15 train/valid/test)")] = DatasetSpec.n
    size: Annotated[
        list[Annotated[int, Field(ge=32)]],
        Field(min_length=2, max_length=2, description="width, height in pixels"),
        Rule("must be [width, height]", ("list_type", "too_short", "too_long")),
    ] = list(DatasetSpec.size)
    seed: Annotated[int, Field(ge=0, description="the generator's seed")] = DatasetSpec.seed


class FolderDataset(_File):
    format: Literal[tuple(FORMATS)]
    annotator: Annotator = DatasetSpec.annotator
    root: NonEmpty = Field(description="the dataset folder (relative to the study file)")


class ResourcesFile(_File):
    cpu: Annotated[float, Field(gt=0, description="CPUs per trial")] = 1.0
    gpu: Annotated[
        float,
        Field(ge=0, le=1, description="GPUs per trial, a fraction to share one (0.25: four)"),
        Why(": a trial trains on one GPU (no data parallelism)", ("less_than_equal",)),
    ] = 0.0


def _asha_kind(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "off"


class StudyFile(_File):
    """A study file: what to search, on which data, with which budget."""

    name: Annotated[
        str,
        Field(pattern=NAME_RE.pattern, description="names the Optuna study and studies/NAME"),
        Rule(NAME_RULE),
    ]
    dataset: Annotated[
        Union[SyntheticDataset, FolderDataset],  # noqa: UP007
        Field(discriminator="format", description="synthetic | aariz | isbi | coco | csv"),
    ]
    space: NonEmpty = Field(description="the space file (relative to the study file)")
    metric: Literal[METRICS] = Field("mre_mm", description="what the search optimises")
    mode: Literal["min", "max"] | None = Field(
        None, description="min | max; default: the metric's (max for sdr_*)"
    )
    num_samples: Annotated[int, Field(ge=1, description="trials")]
    max_epochs: Annotated[int, Field(ge=1, description="epochs of a trial never stopped")]
    asha: Annotated[
        Union[  # noqa: UP007
            Annotated[AshaFile, Tag("mapping")],
            Annotated[Literal[False], Tag("off")],
        ],
        Discriminator(_asha_kind),
        Rule("must be a mapping or false (no early stopping)"),
        Field(description="ASHA early stopping, or false: every trial runs max_epochs"),
    ] = AshaFile()
    sampler: Sampler = "tpe"
    resources: ResourcesFile = Field(ResourcesFile(), description="what one trial holds")
    autoscaling: bool = Field(
        False, description="the cluster adds nodes: no node need hold a trial now"
    )
    max_concurrent_trials: Annotated[int, Field(ge=1)] | None = Field(
        None, description="default: as many as the resources allow"
    )
    max_failures: Annotated[
        int, Field(ge=0, description="retries of a trial whose worker died or raised")
    ] = 0
    seed: Annotated[int, Field(ge=0, description="the sampler's and every trial's seed")] = 0
    storage: Annotated[
        str,
        Field(pattern=URL_RE.pattern, description="the Optuna storage: an SQLAlchemy URL"),
        Rule(
            f"must be a SQLAlchemy URL such as {DEFAULT_STORAGE} or postgresql://USER@HOST/DB",
            ("string_pattern_mismatch",),
        ),
    ] = DEFAULT_STORAGE
    experiment_path: NonEmpty | None = Field(
        None,
        description="where Ray keeps the experiment: a folder every node sees (relative to "
        "the study file) or a URI (s3://bucket/x); default studies/NAME",
    )

    @model_validator(mode="after")
    def _between_keys(self) -> StudyFile:
        wanted = "max" if self.metric.startswith("sdr_") else "min"
        if self.mode is not None and self.mode != wanted:
            better = "higher" if wanted == "max" else "lower"
            rule = f"must be {wanted} for {self.metric} ({better} is better), got {self.mode!r}"
            raise rule_error(rule, key="mode")
        if self.asha is not False:
            grace = self.asha.resolved(self.max_epochs).grace_period
            if grace > self.max_epochs:
                rule = f"must be <= max_epochs ({self.max_epochs}), got {grace}"
                raise rule_error(rule, key="asha.grace_period")
        return self

    @property
    def direction(self) -> str:
        """The study's mode: as given, else the metric's (errors and losses fall, SDRs rise)."""
        return self.mode or ("max" if self.metric.startswith("sdr_") else "min")
