"""The Ray Tune run of a study: the shared trainable on its resources, ``StudySearch`` (Optuna
with the RDB storage), ASHA or no early stopping, the study's record (Optuna and MLflow) told of
every trial by the searcher and the callbacks, checkpoints and retries.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import optuna
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.records.storage import open_storage
from search.records.study_record import StudyRecord
from search.run import early_stopping
from search.run.early_stopping import StudyNote
from search.run.progress import StudyProgress
from search.run.recovery import NewestCheckpoint
from search.run.searcher import RecordTrials, SkipClosedTrials, StudySearch
from search.studyfiles.samplers import make_sampler
from search.studyfiles.space import Space
from search.studyfiles.study import StudySpec
from trainables.config import EPOCHS_AFTER_WARMUP
from trainables.trial import trainable

RAY_NEW_OUTPUT = "RAY_AIR_NEW_OUTPUT"  # Ray's switch between its two terminal engines


@dataclass(frozen=True)
class Suggest:
    """Define-by-run space for OptunaSearch: sample the space, return the trial settings."""

    space: Space
    settings: dict[str, Any]

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        return {**self.space.suggest(trial), **self.settings}


def trial_dirname(trial) -> str:
    """Short trial folders: Ray's default spells out the whole config, paths included."""
    return f"trial_{trial.trial_id}"


def resourced(spec: StudySpec, gpu: float):
    """The trainable with the study's per-trial resources (``gpu`` after ``--cpu``)."""
    return tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": gpu})


def search_alg(
    spec: StudySpec,
    storage: optuna.storages.BaseStorage,
    settings: dict[str, Any],
    warm_start: bool,
    record: StudyRecord | None = None,
) -> StudySearch:
    """The study's searcher: TPE (or random) on the Optuna storage, every trial the space's
    sample plus ``settings``, the warm-start points first when ``warm_start``; its trials'
    lives are ``record``'s (by default a record of the study in ``storage``, Optuna only)."""
    points = [dict(p) for p in spec.space.warm_start] if warm_start else []
    return StudySearch(
        space=Suggest(spec.space, settings),
        metric=spec.metric,
        mode=spec.mode,
        points_to_evaluate=points or None,
        sampler=make_sampler(spec.sampler, spec.seed),
        study_name=spec.name,
        storage=storage,
        max_t=spec.max_epochs,
        num_samples=spec.num_samples,
        record=record,
    )


def tune_config(
    spec: StudySpec, searcher: StudySearch, note: StudyNote | None = None
) -> tune.TuneConfig:
    """What decides which trials run and how long: the searcher, the study's scheduler, the
    concurrency (``benchmarks/search_tabular.py`` runs the same against a table)."""
    return tune.TuneConfig(
        metric=spec.metric,
        mode=spec.mode,
        search_alg=searcher,
        scheduler=scheduler(spec, note),
        num_samples=-1,  # no limit of Ray's own: the searcher counts in the storage
        max_concurrent_trials=spec.max_concurrent_trials,
        reuse_actors=True,
        trial_dirname_creator=trial_dirname,
    )


def build(
    spec: StudySpec,
    record: StudyRecord,
    settings: dict[str, Any],
    experiments: str,
    run: str,
    gpu: float,
    warm_start: bool,
    verbose: bool = False,
) -> tune.Tuner:
    """A new Ray experiment ``run`` in ``experiments`` (a folder or URI) for the trials the
    study still lacks (the searcher counts them in the storage: Ray itself is given no sample
    limit). The searcher, the callbacks and the stopper share ``record``; every trial runs with
    ``settings``. The terminal shows cephtune's progress (``progress``), and Ray's own
    reporter too with ``verbose``."""
    url = record.storage_url
    searcher = search_alg(spec, open_storage(url), settings, warm_start, record)
    ray_reporter(verbose)
    return tune.Tuner(
        resourced(spec, gpu),
        tune_config=tune_config(spec, searcher, StudyNote(url, spec.name)),
        run_config=tune.RunConfig(
            name=run,
            storage_path=experiments,
            stop=SkipClosedTrials(record),
            # Ray's own per-trial CSV and JSON results, but not its TensorBoard logger: MLflow
            # has the same metrics, and tensorboardX costs the driver a torch import.
            callbacks=[
                RecordTrials(record),
                StudyProgress(record, spec),  # after RecordTrials: it reads what that wrote
                NewestCheckpoint(),
                CSVLoggerCallback(),
                JsonLoggerCallback(),
            ],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            # A trial whose worker died or raised is retried from its last checkpoint this
            # many times before it is FAIL; the Optuna trial and MLflow run carry on.
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            verbose=1 if verbose else 0,
        ),
    )


def ray_reporter(verbose: bool) -> None:
    """Ray's own terminal output on (``verbose``) or off. ``verbose=0`` alone does not silence
    Ray's newer output engine, which still prints its experiment box and results path; its
    legacy engine, which cephtune selects when Ray is to be quiet, prints nothing at 0."""
    os.environ[RAY_NEW_OUTPUT] = "1" if verbose else "0"


def can_restore(location: str) -> bool:
    """Whether Ray saved an experiment at ``location`` that ``restore`` can continue."""
    return tune.Tuner.can_restore(location)


def restore(location: str, spec: StudySpec, gpu: float, verbose: bool = False) -> tune.Tuner:
    """The saved Ray experiment at ``location``: unfinished trials continue from their last
    checkpoint (the searcher, callback and stopper come back with the study's record: the one
    this process holds, else one rebuilt from the settings they saved)."""
    ray_reporter(verbose)
    return tune.Tuner.restore(
        location, resourced(spec, gpu), resume_unfinished=True, resume_errored=False
    )


def scheduler(spec: StudySpec, note: StudyNote | None = None) -> TrialScheduler:
    """ASHA on the study's metric (``early_stopping``), or none (FIFO: every trial runs
    ``max_epochs``). Rungs are at epochs after warmup (``EPOCHS_AFTER_WARMUP``): a trial with
    warmup w meets its first rung at epoch w + grace, when it is compared with others past their
    warmup too. It still stops at ``max_epochs`` (its ``epochs``), so ASHA's ``max_t`` only needs
    to be out of the way."""
    if spec.asha is None:
        return FIFOScheduler()
    return early_stopping.scheduler(spec.asha, spec.max_epochs, EPOCHS_AFTER_WARMUP, note)


class _NoRayRestoreHint(logging.Filter):
    """Ray's Ctrl-C message tells users to call ``Tuner.restore``; cephtune's own hint
    (``search.py resume NAME``) is the one that keeps Optuna and MLflow consistent."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


def fit(tuner: tune.Tuner) -> None:
    """Run the experiment until its trials end or Ctrl-C stops it."""
    ray_tune_log = logging.getLogger("ray.tune.tune")
    hint_filter = _NoRayRestoreHint()
    ray_tune_log.addFilter(hint_filter)
    try:
        tuner.fit()
    finally:
        ray_tune_log.removeFilter(hint_filter)
