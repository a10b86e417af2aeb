"""Study files: YAML -> a checked ``StudySpec``. Relative paths resolve against the study file.

The keys are ``search.studyfiles.study_schema``'s (``studies/*.yaml``)::

    name: quickstart                  # letters, digits, - _ . ; names the Optuna study
    dataset:
      format: synthetic               # synthetic | aariz | isbi | coco | csv
      n: 160                          # synthetic: image count (70/15/15 split)
      size: [386, 480]                # synthetic: width height in pixels
      seed: 0                         # synthetic: generator seed
      # root: /data/Aariz             # aariz, isbi, coco, csv: the dataset folder
      annotator: mean                 # senior | junior | mean
    space: ../spaces/quickstart.yaml
    metric: mre_mm
    mode: min                         # optional: the metric's (min; max for sdr_*)
    num_samples: 8
    max_epochs: 8
    asha: {grace_period: 2, reduction_factor: 2}   # or `asha: false`: every trial runs max_epochs
                                      # rungs count epochs after warmup; refused when the
                                      # largest warmup_epochs + grace_period > max_epochs
    sampler: tpe                      # tpe | random (a baseline to compare TPE against), or
                                      # {name: tpe, n_startup_trials: 5, multivariate: true,
                                      #  group: true, constant_liar: true} (these defaults)
    resources: {cpu: 1, gpu: 0}       # per trial; gpu <= 1, may be fractional
    autoscaling: false                # true: the cluster adds nodes on demand (skip the check
                                      # that some node can hold a trial's resources)
    max_concurrent_trials: 2          # optional
    max_failures: 0                   # retries of a trial whose worker died or raised
    seed: 0
    storage: sqlite:///studies/optuna.db   # optional; relative sqlite paths: current directory
    experiment_path: /nfs/cephtune    # optional: where Ray keeps the experiment (trial folders,
                                      # checkpoints): a folder every node sees, or a URI
                                      # (s3://bucket/x, gs://…); default studies/NAME/ray
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from search.layout import STORAGE_ENV, mask_url
from search.studyfiles.asha import Asha, check_warmup
from search.studyfiles.samplers import SamplerSpec, sampler_spec
from search.studyfiles.space import Space
from search.studyfiles.space_file import load_space
from search.studyfiles.study_schema import (
    METRICS,
    NAME_RE,
    NAME_RULE,
    URL_RE,
    DatasetSpec,
    FolderDataset,
    Resources,
    StudyFile,
)
from search.studyfiles.trial_keys import STUDY_SET_KEYS
from search.studyfiles.yamlfile import load_mapping
from trainables.schema import validated

__all__ = [
    "METRICS",
    "NAME_RULE",
    "URL_RE",
    "DatasetSpec",
    "Resources",
    "StudySpec",
    "load_study",
    "valid_name",
]


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A checked study file: what to search, on which data, with which budget."""

    path: str
    name: str
    dataset: DatasetSpec
    space: Space
    metric: str
    mode: str
    num_samples: int
    max_epochs: int
    asha: Asha | None  # None: no early stopping, every trial runs max_epochs
    sampler: SamplerSpec
    resources: Resources
    max_concurrent_trials: int | None
    max_failures: int  # Ray FailureConfig: retries before a trial is FAIL
    seed: int
    storage: str
    experiment_path: str | None  # None: studies/NAME in the project folder

    def record(self) -> dict[str, Any]:
        """The spec as JSON data, stored with the Optuna study and compared on resume. A
        password in the storage URL is masked: optuna-dashboard shows this. Paths are absolute,
        so the same files compare equal however they were named (``studies/x.yaml`` from the
        project folder, ``../x.yaml`` from elsewhere)."""
        out = asdict(self)
        out["path"] = _absolute(self.path)
        out["storage"] = mask_url(self.storage)
        if self.sampler.name != "tpe":  # the TPE options do not apply
            out["sampler"] = {"name": self.sampler.name}
        if self.dataset.root is not None:
            out["dataset"]["root"] = _absolute(self.dataset.root)
        out["space"] = {
            "path": _absolute(self.space.path),
            "fixed": self.space.fixed,
            "params": [asdict(p) for p in self.space.params],
            "warm_start": list(self.space.warm_start),
        }
        return json.loads(json.dumps(out))

    def trial_settings(self, data_root: Path, cache_dir: Path) -> dict[str, Any]:
        """The trainable settings every trial gets: the space's fixed ones and the study's own
        (``STUDY_SET_KEYS``; ``data_root`` is where the dataset is, synthetic or not)."""
        generated = {"synthetic": data_root.name} if self.dataset.format == "synthetic" else {}
        own = {
            "data_dir": str(data_root),
            **generated,
            "dataset_format": self.dataset.loader_format,
            "cache_dir": str(cache_dir),
            "annotator": self.dataset.annotator,
            "epochs": self.max_epochs,
            "seed": self.seed,
            "num_threads": max(1, int(self.resources.cpu)),
        }
        assert set(own) <= set(STUDY_SET_KEYS), "a study-set key missing from STUDY_SET_KEYS"
        return {**self.space.fixed, **own}


def _absolute(path: str) -> str:
    return str(Path(path).resolve())


def valid_name(name: Any) -> bool:
    """A study name: also the folder ``studies/NAME``, which it must not escape."""
    return isinstance(name, str) and bool(NAME_RE.match(name))


def load_study(path: Path | str) -> StudySpec:
    """Load and check a study file and the space it names."""
    path = Path(path)
    file = validated(StudyFile, load_mapping(path), str(path))
    space_file = Path(file.space)
    space = load_space(space_file if space_file.is_absolute() else path.parent / space_file)
    asha = None if file.asha is False else file.asha.resolved(file.max_epochs)
    if asha is not None:
        check_warmup(str(path), asha, file.max_epochs, space)
    experiment_path = file.experiment_path
    if experiment_path is not None:
        experiment_path = _experiment_path(experiment_path, path.parent)
    return StudySpec(
        path=str(path),
        name=file.name,
        dataset=_dataset(file, path.parent),
        space=space,
        metric=file.metric,
        mode=file.direction,
        num_samples=file.num_samples,
        max_epochs=file.max_epochs,
        asha=asha,
        sampler=sampler_spec(file.sampler),
        resources=Resources(file.resources.cpu, file.resources.gpu, file.autoscaling),
        max_concurrent_trials=file.max_concurrent_trials,
        max_failures=file.max_failures,
        seed=file.seed,
        # A file without ``storage`` takes CEPHTUNE_STORAGE when set, as every command does.
        storage=file.storage
        if "storage" in file.model_fields_set
        else os.environ.get(STORAGE_ENV) or file.storage,
        experiment_path=experiment_path,
    )


def _experiment_path(text: str, base: Path) -> str:
    """A URI as given; a folder made absolute against the study file's folder."""
    if URL_RE.match(text) and not text.startswith("file://"):
        return text
    folder = Path(text.removeprefix("file://"))
    return str(folder if folder.is_absolute() else (base / folder).resolve())


def _dataset(file: StudyFile, base: Path) -> DatasetSpec:
    data = file.dataset
    if isinstance(data, FolderDataset):
        root = Path(data.root)
        return DatasetSpec(
            data.format, data.annotator, root=str(root if root.is_absolute() else base / root)
        )
    w, h = data.size
    return DatasetSpec(data.format, data.annotator, n=data.n, size=(w, h), seed=data.seed)
