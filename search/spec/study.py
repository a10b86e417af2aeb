"""Study files: YAML -> a checked ``StudySpec``. Relative paths resolve against the study file.

Schema (``studies/*.yaml``)::

    name: quickstart                  # letters, digits, - _ . ; names the Optuna study
    dataset:
      format: synthetic               # synthetic | aariz | isbi
      n: 160                          # synthetic: image count (70/15/15 split)
      size: [386, 480]                # synthetic: width height in pixels
      seed: 0                         # synthetic: generator seed
      # root: /data/Aariz             # aariz, isbi: the dataset folder
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
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from search.layout import DEFAULT_STORAGE, mask_url
from search.spec.asha import Asha, load_asha
from search.spec.samplers import SamplerSpec, load_sampler
from search.spec.space import Space
from search.spec.space_file import load_space
from search.spec.trial_keys import STUDY_SET_KEYS
from search.spec.yamlfile import Checker, load_mapping
from trainables.data.formats import FORMATS
from trainables.data.records import ANNOTATOR_CHOICES
from trainables.eval.metrics import SDR_THRESHOLDS_MM, sdr_key

METRICS = ("mre_mm", "mre_sd_mm", "train_loss", *(sdr_key(t) for t in SDR_THRESHOLDS_MM))
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
FILE_KEYS = (  # the keys a study file may have
    "name",
    "dataset",
    "space",
    "metric",
    "mode",
    "num_samples",
    "max_epochs",
    "asha",
    "sampler",
    "resources",
    "autoscaling",
    "max_concurrent_trials",
    "max_failures",
    "seed",
    "storage",
    "experiment_path",
)
REQUIRED = ("name", "dataset", "space", "num_samples", "max_epochs")


@dataclass(frozen=True)
class DatasetSpec:
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

    cpu: float = 1.0
    gpu: float = 0.0
    autoscaling: bool = False


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
    sampler: SamplerSpec = SamplerSpec()
    resources: Resources = Resources()
    max_concurrent_trials: int | None = None
    max_failures: int = 0  # Ray FailureConfig: retries before a trial is FAIL
    seed: int = 0
    storage: str = DEFAULT_STORAGE
    experiment_path: str | None = None  # None: studies/NAME in the project folder

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


NAME_RULE = (
    "must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit "
    "(no path separators)"
)


def valid_name(name: Any) -> bool:
    """A study name: also the folder ``studies/NAME``, which it must not escape."""
    return isinstance(name, str) and bool(NAME_RE.match(name))


def load_study(path: Path | str) -> StudySpec:
    """Load and check a study file and the space it names."""
    path = Path(path)
    raw = load_mapping(path)
    check = Checker(path)
    check.keys(raw, FILE_KEYS, required=REQUIRED)
    if not valid_name(raw["name"]):
        raise check.fail("name", f"{NAME_RULE}, got {raw['name']!r}")
    dataset = _dataset(check, raw["dataset"], path.parent)
    space_file = Path(check.string(raw["space"], "space"))
    space = load_space(space_file if space_file.is_absolute() else path.parent / space_file)
    metric = check.string(raw.get("metric", "mre_mm"), "metric", METRICS)
    max_epochs = check.integer(raw["max_epochs"], "max_epochs", minimum=1)
    concurrent = raw.get("max_concurrent_trials")
    if concurrent is not None:
        concurrent = check.integer(concurrent, "max_concurrent_trials", minimum=1)
    storage = check.string(raw.get("storage", DEFAULT_STORAGE), "storage")
    if not URL_RE.match(storage):
        raise check.fail(
            "storage",
            f"must be a SQLAlchemy URL such as {DEFAULT_STORAGE} or "
            f"postgresql://USER@HOST/DB, got {storage!r}",
        )
    experiment_path = raw.get("experiment_path")
    if experiment_path is not None:
        experiment_path = _experiment_path(check, experiment_path, path.parent)
    return StudySpec(
        path=str(path),
        name=raw["name"],
        dataset=dataset,
        space=space,
        metric=metric,
        mode=_mode(check, raw.get("mode"), metric),
        num_samples=check.integer(raw["num_samples"], "num_samples", minimum=1),
        max_epochs=max_epochs,
        asha=load_asha(check, raw.get("asha", {}), max_epochs, space),
        sampler=load_sampler(check, raw.get("sampler", "tpe")),
        resources=_resources(check, raw.get("resources", {}), raw.get("autoscaling", False)),
        max_concurrent_trials=concurrent,
        max_failures=check.integer(raw.get("max_failures", 0), "max_failures", minimum=0),
        seed=check.integer(raw.get("seed", 0), "seed", minimum=0),
        storage=storage,
        experiment_path=experiment_path,
    )


def _experiment_path(check: Checker, raw: Any, base: Path) -> str:
    """A URI as given; a folder made absolute against the study file's folder."""
    text = check.string(raw, "experiment_path")
    if URL_RE.match(text) and not text.startswith("file://"):
        return text
    folder = Path(text.removeprefix("file://"))
    return str(folder if folder.is_absolute() else (base / folder).resolve())


def _resources(check: Checker, raw: Any, autoscaling: Any) -> Resources:
    raw = check.mapping(raw, "resources")
    check.keys(raw, ("cpu", "gpu"), prefix="resources.")
    cpu = check.number(raw.get("cpu", 1), "resources.cpu", positive=True)
    gpu = check.number(raw.get("gpu", 0), "resources.gpu")
    if gpu < 0:
        raise check.fail("resources.gpu", f"must be >= 0, got {gpu}")
    if gpu > 1:
        raise check.fail(
            "resources.gpu",
            f"must be <= 1: a trial trains on one GPU (no data parallelism), got {gpu:g}",
        )
    if not isinstance(autoscaling, bool):
        raise check.fail("autoscaling", f"must be true or false, got {autoscaling!r}")
    return Resources(cpu, gpu, autoscaling)


def _mode(check: Checker, raw: Any, metric: str) -> str:
    """``min`` for errors and losses, ``max`` for detection rates: the metric decides, so a
    study can neither default to maximising an error nor silently minimise an SDR."""
    wanted = "max" if metric.startswith("sdr_") else "min"
    if raw is None:
        return wanted
    mode = check.string(raw, "mode", ("min", "max"))
    if mode != wanted:
        better = "higher" if wanted == "max" else "lower"
        raise check.fail(
            "mode", f"must be {wanted} for {metric} ({better} is better), got {mode!r}"
        )
    return mode


def _dataset(check: Checker, raw: Any, base: Path) -> DatasetSpec:
    raw = check.mapping(raw, "dataset")
    fmt = check.string(raw.get("format"), "dataset.format", ("synthetic", *FORMATS))
    annotator = check.string(raw.get("annotator", "mean"), "dataset.annotator", ANNOTATOR_CHOICES)
    if fmt != "synthetic":
        check.keys(raw, ("format", "annotator", "root"), prefix="dataset.", required=("root",))
        root = Path(check.string(raw["root"], "dataset.root"))
        return DatasetSpec(fmt, annotator, root=str(root if root.is_absolute() else base / root))
    check.keys(raw, ("format", "annotator", "n", "size", "seed"), prefix="dataset.")
    n = check.integer(raw.get("n", 100), "dataset.n", minimum=3)
    size = raw.get("size", [386, 480])
    if not (isinstance(size, list) and len(size) == 2):
        raise check.fail("dataset.size", f"must be [width, height], got {size!r}")
    w, h = (check.integer(v, "dataset.size", minimum=32) for v in size)
    seed = check.integer(raw.get("seed", 0), "dataset.seed", minimum=0)
    return DatasetSpec(fmt, annotator, n=n, size=(w, h), seed=seed)
