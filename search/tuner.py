"""Run a validated study: Ray Tune + OptunaSearch (TPE, RDB storage) + ASHA + MLflow logging.

Everything that can reject the study (data, resources, an existing name) is checked before the
first record is written, so a refused start leaves no trace in Optuna or MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from search import datasets, tracking
from search.space import Space
from search.storage import experiment_dir, open_storage, resolve_url, study_exists
from search.study import Study
from trainables.cache import resolve_cache_dir
from trainables.errors import ConfigError
from trainables.train import trainable


@dataclass(frozen=True)
class Suggest:
    """Define-by-run space for OptunaSearch: sample the space, return the constants."""

    space: Space
    constants: dict[str, Any]

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        return {**self.space.suggest(trial), **self.constants}


def trial_dirname(trial) -> str:
    """Short trial folders: Ray's default spells out the whole config, paths included."""
    return f"trial_{trial.trial_id}"


def ensure_ray() -> None:
    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level="WARNING")


def check_resources(study: Study, cpu_only: bool) -> float:
    """The GPU share per trial to request; a GPU study on a GPU-less cluster fails fast."""
    if study.gpu == 0 or cpu_only:
        return 0.0
    available = ray.cluster_resources().get("GPU", 0)
    if available < study.gpu:
        raise ConfigError(
            f"{study.path}: resources.gpu asks for {study.gpu} GPU per trial but the "
            f"cluster has {available:g}; pass --cpu to run on CPU"
        )
    return study.gpu


def start(study: Study, fresh: bool = False, cpu_only: bool = False) -> Path:
    """Run ``study`` to completion; returns the prepared dataset folder."""
    data_root = datasets.prepare(study.dataset)
    ensure_ray()
    gpu = check_resources(study, cpu_only)
    storage = open_storage(study.storage)
    if study_exists(storage, study.name):
        if not fresh:
            raise ConfigError(
                f"{study.path}: study {study.name!r} already exists in "
                f"{resolve_url(study.storage)}; use --fresh to start it over"
            )
        optuna.delete_study(study_name=study.name, storage=storage)
        tracking.delete_runs(study.name)

    constants = {
        **study.space.fixed,
        "data_dir": str(data_root),
        "dataset_format": study.dataset.loader_format,
        "cache_dir": str(resolve_cache_dir()),
        "annotator": study.dataset.annotator,
        "epochs": study.max_epochs,
        "seed": study.seed,
        "num_threads": max(1, int(study.cpu)),
    }
    direction = "minimize" if study.mode == "min" else "maximize"
    created = optuna.create_study(study_name=study.name, storage=storage, direction=direction)
    created.set_user_attr("spec", study.spec())
    created.set_user_attr("constants", constants)
    created.set_user_attr("metric", study.metric)
    callbacks = [tracking.trial_logger(study.name)]

    searcher = OptunaSearch(
        space=Suggest(study.space, constants),
        metric=study.metric,
        mode=study.mode,
        sampler=optuna.samplers.TPESampler(seed=study.seed),
        study_name=study.name,
        storage=storage,
    )
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=study.max_epochs,
        grace_period=study.grace_period,
        reduction_factor=study.reduction_factor,
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": study.cpu, "gpu": gpu}),
        tune_config=tune.TuneConfig(
            metric=study.metric,
            mode=study.mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=study.num_samples,
            max_concurrent_trials=study.max_concurrent_trials,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name="ray",
            storage_path=str(experiment_dir(study.name).parent),
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=1,
        ),
    )
    tuner.fit()
    return data_root
