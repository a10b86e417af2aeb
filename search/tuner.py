"""Run a study: Ray Tune + StudySearch (Optuna TPE, RDB storage) + ASHA + MLflow lineage.

Everything that can reject a start (data, resources, an existing name, a held lock) is checked
before the first record is written, so a refused start leaves no trace in Optuna or MLflow.
``resume`` continues an interrupted study with ``Tuner.restore`` when Ray saved the experiment,
and in every case leaves the records consistent: trials that were running when the driver died
are marked FAIL (``interrupted``) and replaced, so the study ends with ``num_samples`` trials
that finished (completed, pruned or failed on their own).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from search import datasets, tracking
from search.lineage import StudyLineage, close_run, start_parent, sync_runs
from search.results import FAIL_REASON, INTERRUPTED, RAY_TRIAL_ID, finished, load
from search.searcher import LiveTrials, SkipClosedTrials, StudySearch
from search.space import Space
from search.storage import (
    SQLITE,
    experiment_dir,
    mask_url,
    open_storage,
    resolve_url,
    study_exists,
    study_lock,
)
from search.study import Study, load_study
from trainables.cache import resolve_cache_dir
from trainables.errors import ConfigError
from trainables.trial import trainable


@dataclass(frozen=True)
class Suggest:
    """Define-by-run space for OptunaSearch: sample the space, return the constants."""

    space: Space
    constants: dict[str, Any]

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        return {**self.space.suggest(trial), **self.constants}


SAMPLERS = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}


def trial_dirname(trial) -> str:
    """Short trial folders: Ray's default spells out the whole config, paths included."""
    return f"trial_{trial.trial_id}"


def ensure_ray(address: str | None = None) -> None:
    """Start a local Ray, or join the cluster at ``address`` (auto, HOST:PORT, ray://…)."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # the loggers are in RunConfig
    # Ray 2.60 leaves CUDA_VISIBLE_DEVICES alone for an actor given no GPU unless this is set,
    # so a CPU trial would see (and could use) every GPU. The workers of a local Ray inherit
    # it; a cluster's workers have their own environment, and the trial itself then follows
    # its resources (trainables.device).
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")
    if ray.is_initialized():
        return
    if address is not None:
        _check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        if address is None:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot connect to the Ray cluster at {address}: {first}") from None


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at a HOST:PORT cluster address."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ConfigError(
            f"cannot connect to the Ray cluster at {address}: {e.strerror or e}"
        ) from None


def check_resources(study: Study, cpu_only: bool) -> float:
    """The GPU share per trial to request. A trial runs on one node, so some node must hold a
    trial's CPUs and GPUs, or Ray would wait for it forever: refuse before anything is recorded,
    unless the study says the cluster autoscales. A GPU study on a GPU-less cluster fails too."""
    gpu = 0.0 if cpu_only else study.gpu
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    total_gpu = sum(n.get("GPU", 0) for n in nodes)
    if gpu and not total_gpu and not study.autoscaling:
        raise ConfigError(
            f"{study.path}: resources.gpu asks for {gpu:g} GPU per trial but the cluster "
            "has 0; pass --cpu to run it on CPU"
        )
    if study.autoscaling:
        return gpu
    for key, unit, asked in (("cpu", "CPU", study.cpu), ("gpu", "GPU", gpu)):
        largest = max((n.get(unit, 0) for n in nodes), default=0)
        if asked > largest:
            total = sum(n.get(unit, 0) for n in nodes)
            raise ConfigError(
                f"{study.path}: resources.{key} asks for {asked:g} {unit} per trial but no node "
                f"of the cluster has that many (largest node {largest:g}, {len(nodes)} "
                f"node{'s' if len(nodes) != 1 else ''}, {total:g} in all); lower it, or set "
                "`autoscaling: true` if the cluster adds nodes on demand"
            )
    return gpu


def close_orphans(study: optuna.Study, keep: frozenset[str] = frozenset()) -> int:
    """Mark trials still RUNNING in the storage FAIL (interrupted) and end their MLflow runs,
    except those of the Ray trials in ``keep`` (Ray continues them)."""
    storage = study._storage
    client = MlflowClient(tracking.tracking_uri())
    orphans = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get(RAY_TRIAL_ID) not in keep
    ]
    for trial in orphans:
        storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, INTERRUPTED)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            close_run(client, run_id, storage.get_trial(trial._trial_id))
    return len(orphans)


def _unfinished_in_ray(folder: Path) -> frozenset[str]:
    """The Ray trial ids that ``Tuner.restore`` continues: unfinished in the saved experiment."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(folder)).trials
    return frozenset(t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR"))


def _constants(study: Study, data_root: Path) -> dict[str, Any]:
    generated = {"synthetic": data_root.name} if study.dataset.format == "synthetic" else {}
    return {
        **study.space.fixed,
        "data_dir": str(data_root),
        **generated,
        "dataset_format": study.dataset.loader_format,
        "cache_dir": str(resolve_cache_dir()),
        "annotator": study.dataset.annotator,
        "epochs": study.max_epochs,
        "seed": study.seed,
        "num_threads": max(1, int(study.cpu)),
    }


def _tuner(
    study: Study,
    ot_study: optuna.Study,
    gpu: float,
    run_name: str,
    warm_start: bool,
) -> tune.Tuner:
    ot_study.set_user_attr("ray_run", run_name)
    attrs = ot_study.user_attrs
    folder = experiment_dir(study.name).parent / run_name
    points = [dict(p) for p in study.space.warm_start] if warm_start else []
    searcher = StudySearch(
        space=Suggest(study.space, attrs["constants"]),
        metric=study.metric,
        mode=study.mode,
        points_to_evaluate=points or None,
        sampler=SAMPLERS[study.sampler](seed=study.seed),
        study_name=study.name,
        storage=ot_study._storage,
        max_t=study.max_epochs,
        num_samples=study.num_samples,
    )
    lineage = StudyLineage(
        study.name,
        study.storage,
        tracking.tracking_uri(),
        attrs["mlflow_experiment_id"],
        attrs["mlflow_parent_run_id"],
        study.metric,
        study.mode,
    )
    return tune.Tuner(
        tune.with_resources(trainable, {"cpu": study.cpu, "gpu": gpu}),
        tune_config=tune.TuneConfig(
            metric=study.metric,
            mode=study.mode,
            search_alg=searcher,
            scheduler=_scheduler(study),
            num_samples=-1,  # no limit of Ray's own: the searcher counts in the storage
            max_concurrent_trials=study.max_concurrent_trials,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=str(folder.parent),
            stop=SkipClosedTrials(study.storage, study.name),
            # Ray's own per-trial CSV and JSON results, but not its TensorBoard logger: MLflow
            # has the same metrics, and tensorboardX costs the driver a torch import.
            callbacks=[LiveTrials(), lineage, CSVLoggerCallback(), JsonLoggerCallback()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            # A trial whose worker died or raised is retried from its last checkpoint this
            # many times before it is FAIL; the Optuna trial and MLflow run carry on.
            failure_config=tune.FailureConfig(max_failures=study.max_failures),
            verbose=1,
        ),
    )


def _scheduler(study: Study) -> TrialScheduler:
    """ASHA on the study's metric, or none (FIFO: every trial runs ``max_epochs``)."""
    if not study.early_stopping:
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=study.max_epochs,
        grace_period=study.grace_period,
        reduction_factor=study.reduction_factor,
    )


class _NoRayRestoreHint(logging.Filter):
    """Ray's Ctrl-C message tells users to call ``Tuner.restore``; cephtune's own hint
    (``search.py resume NAME``) is the one that keeps Optuna and MLflow consistent."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


def _fit(tuner: tune.Tuner, study: Study, ot_study: optuna.Study) -> bool:
    """Run; True when the study reached ``num_samples`` finished trials."""
    ray_tune_log = logging.getLogger("ray.tune.tune")
    hint_filter = _NoRayRestoreHint()
    ray_tune_log.addFilter(hint_filter)
    try:
        tuner.fit()
    finally:
        ray_tune_log.removeFilter(hint_filter)
    if len(finished(ot_study)) < study.num_samples:
        return False  # stopped early (Ctrl-C): leave the running trials for resume
    _settle(ot_study)
    return True


def _settle(ot_study: optuna.Study) -> None:
    """A study that has all its trials: no trial or run stays RUNNING anywhere."""
    close_orphans(ot_study)
    attrs = ot_study.user_attrs
    client = MlflowClient(tracking.tracking_uri())
    sync_runs(client, attrs["mlflow_experiment_id"], ot_study)
    client.set_terminated(attrs["mlflow_parent_run_id"])


def start(
    study: Study, fresh: bool = False, cpu_only: bool = False, address: str | None = None
) -> tuple[Path, bool]:
    """Run ``study``; returns the dataset folder and whether the study completed."""
    data_root = datasets.prepare(study.dataset)
    ensure_ray(address)
    gpu = check_resources(study, cpu_only)
    where = f"{study.path}: storage"
    if not resolve_url(study.storage).startswith(SQLITE):
        open_storage(study.storage, where)  # an unreachable server fails before the lock file
    with study_lock(study.name):
        storage = open_storage(study.storage, where)  # a new sqlite file only once we hold it
        if study_exists(storage, study.name):
            if not fresh:
                raise ConfigError(
                    f"{study.path}: study {study.name!r} already exists in "
                    f"{mask_url(resolve_url(study.storage))}; continue it with "
                    f"`python search.py resume {study.name}` or start over with --fresh"
                )
            optuna.delete_study(study_name=study.name, storage=storage)
            tracking.delete_runs(study.name)
            shutil.rmtree(experiment_dir(study.name).parent, ignore_errors=True)
            experiment_dir(study.name).parent.mkdir(parents=True, exist_ok=True)
        direction = "minimize" if study.mode == "min" else "maximize"
        ot_study = optuna.create_study(study_name=study.name, storage=storage, direction=direction)
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and still there
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ot_study.set_metric_names([study.metric])  # optuna-dashboard names the objective
        experiment_id = tracking.ensure_experiment(study.name)
        constants = _constants(study, data_root)
        parent = start_parent(
            MlflowClient(tracking.tracking_uri()),
            experiment_id,
            study.name,
            study.storage,
            str(Path(study.path).resolve()),
            constants,
        )
        for key, value in {
            "spec": study.spec(),
            "constants": constants,
            "metric": study.metric,
            "study_file": str(Path(study.path).resolve()),
            "project": str(Path.cwd()),
            "mlflow_tracking_uri": mask_url(tracking.tracking_uri()),
            "mlflow_experiment_id": experiment_id,
            "mlflow_parent_run_id": parent,
        }.items():
            ot_study.set_user_attr(key, value)
        run_name = experiment_dir(study.name).name
        tuner = _tuner(study, ot_study, gpu, run_name, warm_start=True)
        return data_root, _fit(tuner, study, ot_study)


def resume(
    name: str, storage_url: str, cpu_only: bool = False, address: str | None = None
) -> tuple[Study, Path, bool]:
    """Continue an interrupted study from its storage records and Ray experiment.

    It runs in the project folder the study was started from, whatever the current directory:
    the Ray experiment, the lock, the default MLflow store and relative sqlite URLs are there.
    """
    ot_study = load(name, storage_url)
    attrs = ot_study.user_attrs
    if "study_file" not in attrs:
        raise ConfigError(
            f"study {name!r} in {mask_url(storage_url)} was not started by cephtune "
            "(it has no study_file); there is nothing to resume"
        )
    project = Path(attrs.get("project", Path.cwd()))
    if not project.is_dir():
        raise ConfigError(
            f"study {name!r} was started in {project}, which is gone; its Ray experiment and "
            "MLflow store were there"
        )
    os.chdir(project)
    recorded = attrs.get("mlflow_tracking_uri")
    here = mask_url(tracking.tracking_uri())
    if recorded is not None and recorded != here:
        raise ConfigError(
            f"study {name!r} records its MLflow runs in {recorded}, but MLflow here is {here}; "
            f"set MLFLOW_TRACKING_URI={recorded} (with the password if *** hides one)"
        )
    study = load_study(attrs["study_file"])
    if study.spec() != ot_study.user_attrs["spec"]:
        raise ConfigError(
            f"{study.path}: changed since study {name!r} started; resume is for recovery, "
            "not for a new spec (start a new study, or --fresh)"
        )
    data_root = datasets.prepare(study.dataset)
    ensure_ray(address)
    gpu = check_resources(study, cpu_only)
    with study_lock(name):
        if len(finished(ot_study)) >= study.num_samples:
            _settle(ot_study)
            return study, data_root, True
        folder = experiment_dir(name).parent / ot_study.user_attrs["ray_run"]
        if tune.Tuner.can_restore(str(folder)):
            # Trials Ray will not continue (it saved the experiment before they started) are
            # interrupted now, so the searcher's count of running trials is true.
            close_orphans(ot_study, keep=_unfinished_in_ray(folder))
            tuner = tune.Tuner.restore(
                str(folder),
                tune.with_resources(trainable, {"cpu": study.cpu, "gpu": gpu}),
                resume_unfinished=True,
                resume_errored=False,
            )
        else:  # the driver died before Ray saved anything: replace the lost trials
            close_orphans(ot_study)
            run_name = f"{experiment_dir(name).name}-{len(ot_study.trials)}"
            tuner = _tuner(study, ot_study, gpu, run_name, warm_start=False)
        return study, data_root, _fit(tuner, study, ot_study)
