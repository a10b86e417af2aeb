"""Study files: YAML -> validated ``Study``. Relative paths resolve against the study file.

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
    sampler: tpe                      # tpe | random (a baseline to compare TPE against)
    resources: {cpu: 1, gpu: 0}       # per trial; gpu <= 1, may be fractional
    autoscaling: false                # true: the cluster adds nodes on demand (skip the check
                                      # that some node can hold a trial's resources)
    max_concurrent_trials: 2          # optional
    max_failures: 0                   # retries of a trial whose worker died or raised
    seed: 0
    storage: sqlite:///studies/optuna.db   # optional; relative sqlite paths: current directory
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from search.schema import Checker, load_mapping
from search.space import Space, load_space
from trainables.metrics import SDR_THRESHOLDS_MM, sdr_key
from trainables.records import FORMATS

DEFAULT_STORAGE = "sqlite:///studies/optuna.db"
METRICS = ("mre_mm", "mre_sd_mm", "train_loss", *(sdr_key(t) for t in SDR_THRESHOLDS_MM))
SAMPLERS = ("tpe", "random")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
STUDY_KEYS = (
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
)


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
class Study:
    """A validated study: what to search, on which data, with which budget."""

    path: str
    name: str
    dataset: DatasetSpec
    space: Space
    metric: str
    mode: str
    num_samples: int
    max_epochs: int
    grace_period: int
    reduction_factor: int
    cpu: float
    gpu: float
    max_concurrent_trials: int | None
    seed: int
    storage: str
    early_stopping: bool = True  # ASHA; False runs every trial to max_epochs
    sampler: str = "tpe"
    max_failures: int = 0  # Ray FailureConfig: retries before a trial is FAIL
    autoscaling: bool = False  # the cluster grows on demand: no node need hold a trial now

    def spec(self) -> dict[str, Any]:
        """The resolved study as JSON data, as stored with the Optuna study and compared on
        resume. A password in the storage URL is masked: optuna-dashboard shows this. Paths are
        absolute, so the same files compare equal however they were named (``studies/x.yaml``
        from the project folder, ``../x.yaml`` from elsewhere)."""
        from search.storage import mask_url

        out = asdict(self)
        out["path"] = _absolute(self.path)
        out["storage"] = mask_url(self.storage)
        if self.dataset.root is not None:
            out["dataset"]["root"] = _absolute(self.dataset.root)
        out["space"] = {
            "path": _absolute(self.space.path),
            "fixed": self.space.fixed,
            "params": [asdict(p) for p in self.space.params],
            "warm_start": list(self.space.warm_start),
        }
        return json.loads(json.dumps(out))


def _absolute(path: str) -> str:
    return str(Path(path).resolve())


NAME_RULE = (
    "must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit "
    "(no path separators)"
)


def valid_name(name: Any) -> bool:
    """A study name: also the folder ``studies/NAME``, which it must not escape."""
    return isinstance(name, str) and bool(NAME_RE.match(name))


def check_name(name: Any, check: Checker) -> str:
    if not valid_name(name):
        raise check.fail("name", f"{NAME_RULE}, got {name!r}")
    return name


def load_study(path: Path | str) -> Study:
    """Load and validate a study file and the space it names."""
    path = Path(path)
    raw = load_mapping(path)
    check = Checker(path)
    check.keys(raw, STUDY_KEYS, required=("name", "dataset", "space", "num_samples", "max_epochs"))
    name = check_name(raw["name"], check)
    dataset = _dataset(check, raw["dataset"], path.parent)
    space_file = Path(check.string(raw["space"], "space"))
    space = load_space(space_file if space_file.is_absolute() else path.parent / space_file)
    metric = check.string(raw.get("metric", "mre_mm"), "metric", METRICS)
    mode = _mode(check, raw.get("mode"), metric)
    num_samples = check.integer(raw["num_samples"], "num_samples", minimum=1)
    max_epochs = check.integer(raw["max_epochs"], "max_epochs", minimum=1)
    asha = raw.get("asha", {})
    early_stopping = asha is not False
    if not isinstance(asha, dict | bool) or asha is True:
        raise check.fail("asha", f"must be a mapping or false (no early stopping), got {asha!r}")
    asha = asha or {}
    check.keys(asha, ("grace_period", "reduction_factor"), prefix="asha.")
    grace = check.integer(asha.get("grace_period", 1), "asha.grace_period", minimum=1)
    if grace > max_epochs:
        raise check.fail("asha.grace_period", f"must be <= max_epochs ({max_epochs}), got {grace}")
    factor = check.integer(asha.get("reduction_factor", 2), "asha.reduction_factor", minimum=2)
    sampler = check.string(raw.get("sampler", "tpe"), "sampler", SAMPLERS)
    resources = check.mapping(raw.get("resources", {}), "resources")
    check.keys(resources, ("cpu", "gpu"), prefix="resources.")
    cpu = check.number(resources.get("cpu", 1), "resources.cpu", positive=True)
    gpu = check.number(resources.get("gpu", 0), "resources.gpu")
    if gpu < 0:
        raise check.fail("resources.gpu", f"must be >= 0, got {gpu}")
    autoscaling = raw.get("autoscaling", False)
    if not isinstance(autoscaling, bool):
        raise check.fail("autoscaling", f"must be true or false, got {autoscaling!r}")
    if gpu > 1:
        raise check.fail(
            "resources.gpu",
            f"must be <= 1: a trial trains on one GPU (no data parallelism), got {gpu:g}",
        )
    concurrent = raw.get("max_concurrent_trials")
    if concurrent is not None:
        concurrent = check.integer(concurrent, "max_concurrent_trials", minimum=1)
    max_failures = check.integer(raw.get("max_failures", 0), "max_failures", minimum=0)
    seed = check.integer(raw.get("seed", 0), "seed", minimum=0)
    storage = check.string(raw.get("storage", DEFAULT_STORAGE), "storage")
    if not URL_RE.match(storage):
        raise check.fail(
            "storage",
            f"must be a SQLAlchemy URL such as {DEFAULT_STORAGE} or "
            f"postgresql://USER@HOST/DB, got {storage!r}",
        )
    return Study(
        str(path),
        name,
        dataset,
        space,
        metric,
        mode,
        num_samples,
        max_epochs,
        grace,
        factor,
        cpu,
        gpu,
        concurrent,
        seed,
        storage,
        early_stopping,
        sampler,
        max_failures,
        autoscaling,
    )


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
    annotator = check.string(
        raw.get("annotator", "mean"), "dataset.annotator", ("senior", "junior", "mean")
    )
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
