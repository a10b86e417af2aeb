"""A study's life: start, resume after any stop, and settle once it has all its trials.

Everything that can reject a start (data, resources, the storage, an existing name, a held
lock) is checked before the first record is written, so a refused start leaves no trace in
Optuna or MLflow. ``resume`` continues an interrupted study with ``Tuner.restore`` when Ray saved
the experiment, in the project folder the study was started in, and in every case leaves the
records consistent: trials that were running when the driver died and that Ray cannot continue
are marked FAIL (``interrupted``) and replaced, so the study ends with ``num_samples`` trials
that finished (completed, pruned or failed on their own).
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
from ray import tune

from search.layout import SQLITE, Layout, mask_url
from search.records import trials
from search.records.lineage import StudyRuns
from search.records.storage import lost, open_storage, open_study, reconnect_wait, study_exists
from search.records.study_record import StudyRecord
from search.records.tracking import Tracking, server_lost
from search.run import datasets, memory_check, nodes, tuner
from search.run.cluster import check_resources, ensure_ray, unfinished_in_ray
from search.run.lock import study_lock
from search.studyfiles.space_file import pretrained_backbones
from search.studyfiles.study import StudySpec, load_study
from trainables.data.cache import resolve_cache_dir
from trainables.errors import CephtuneError, ConfigError, first_line


@dataclass(frozen=True)
class Outcome:
    """Where a study ran and what it reached: the summary's input."""

    spec: StudySpec
    layout: Layout
    complete: bool  # False: stopped (Ctrl-C) before num_samples trials finished


def start(
    spec: StudySpec,
    layout: Layout,
    fresh: bool = False,
    cpu_only: bool = False,
    address: str | None = None,
    verbose: bool = False,
) -> Outcome:
    """Run the study of ``spec`` in the project ``layout`` (``verbose``: Ray's reporter too)."""
    track = Tracking(layout, writes=True)
    data_root, gpu = _prepare(spec, layout, track, cpu_only, address)
    url, where = layout.url(spec.storage, create=True), f"{spec.path}: storage"
    if not url.startswith(SQLITE):
        open_storage(url, where)  # an unreachable server fails before the lock file
    with study_lock(layout, spec.name, url):
        storage = open_storage(url, where)  # a new sqlite file only once we hold the lock
        if study_exists(storage, spec.name):
            if not fresh:
                raise ConfigError(
                    f"{spec.path}: study {spec.name!r} already exists in {mask_url(url)}; "
                    f"continue it with `python search.py resume {spec.name}` or start over "
                    "with --fresh"
                )
            optuna.delete_study(study_name=spec.name, storage=storage)
            track.delete_runs(spec.name)
            for entry in layout.study_dir(spec.name).iterdir():  # all but the lock we hold
                if entry != layout.lock_file(spec.name):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            if spec.experiment_path is not None:
                _delete(layout.experiments(spec.name, spec.experiment_path))
        direction = "minimize" if spec.mode == "min" else "maximize"
        study = optuna.create_study(study_name=spec.name, storage=storage, direction=direction)
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and still there
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([spec.metric])  # optuna-dashboard names the objective
        experiment_id = track.ensure_experiment(spec.name)
        settings = spec.trial_settings(data_root, resolve_cache_dir())
        study_file = str(Path(spec.path).resolve())
        runs = StudyRuns.begin(track, experiment_id, spec.name, spec.storage, study_file, settings)
        trials.record_study(
            study,
            {
                trials.SPEC: spec.record(),
                trials.CONSTANTS: settings,
                trials.METRIC: spec.metric,
                trials.STUDY_FILE: study_file,
                trials.PROJECT: str(layout.root),
                trials.MLFLOW_TRACKING_URI: mask_url(track.uri),
                trials.MLFLOW_EXPERIMENT_ID: experiment_id,
                trials.MLFLOW_PARENT_RUN_ID: runs.parent_run_id,
                trials.BASELINE: datasets.mean_shape_baseline(
                    data_root, spec.dataset.annotator, spec.dataset.loader_format
                ),
            },
        )
        record = StudyRecord(spec.name, url, spec.metric, spec.max_epochs, runs)
        experiments = layout.experiments(spec.name, spec.experiment_path)
        run = _build(spec, study, record, settings, experiments, "ray", gpu, True, verbose)
        return Outcome(spec, layout, _run(run, spec, study, record, track))


def resume(
    name: str,
    storage_url: str,
    here: Layout,
    cpu_only: bool = False,
    address: str | None = None,
    verbose: bool = False,
    num_samples: int | None = None,
) -> Outcome:
    """Continue study ``name`` from its records and Ray experiment. ``storage_url`` is resolved
    against ``here`` (where the command runs); the study then runs in the project folder it was
    started in, wherever that is: its Ray experiment, lock and default MLflow store are there.
    ``num_samples`` raises the budget of a study that finished its trials (Optuna's "run
    more"): the new trials run in a new Ray experiment of the same study."""
    study = open_study(name, here.url(storage_url))
    attrs = study.user_attrs
    if trials.STUDY_FILE not in attrs:
        raise ConfigError(
            f"study {name!r} in {mask_url(storage_url)} was not started by cephtune "
            "(it has no study_file); there is nothing to resume"
        )
    layout = Layout(Path(attrs.get(trials.PROJECT, here.root)))
    if not layout.root.is_dir() and attrs.get(trials.SPEC, {}).get("experiment_path"):
        layout = here  # another machine: the experiment is at experiment_path, not there
    elif not layout.root.is_dir():
        raise ConfigError(
            f"study {name!r} was started in {layout.root}, which is gone; its Ray experiment "
            "and MLflow store were there"
        )
    track = Tracking(layout)
    recorded = attrs.get(trials.MLFLOW_TRACKING_URI)
    if recorded is not None and recorded != mask_url(track.uri):
        raise ConfigError(
            f"study {name!r} records its MLflow runs in {recorded}, but MLflow here is "
            f"{mask_url(track.uri)}; set MLFLOW_TRACKING_URI={recorded} (with the password if "
            "*** hides one)"
        )
    spec = _unchanged(load_study(attrs[trials.STUDY_FILE]), study, num_samples)
    if num_samples is not None:  # before Ray starts: a refusal is quick
        _check_more(spec, study, num_samples)
    _, gpu = _prepare(spec, layout, track, cpu_only, address)
    runs = StudyRuns(
        track.uri, attrs[trials.MLFLOW_EXPERIMENT_ID], attrs[trials.MLFLOW_PARENT_RUN_ID]
    )
    record = StudyRecord(name, layout.url(spec.storage), spec.metric, spec.max_epochs, runs)
    with study_lock(layout, name, here.url(storage_url)):
        if num_samples is not None:
            _check_more(spec, study, num_samples)  # again, now that no other driver runs
        if len(trials.finished(study)) >= spec.num_samples:
            record.settle()
            return Outcome(spec, layout, True)
        experiments = layout.experiments(name, spec.experiment_path)
        folder = f"{experiments}/{attrs[trials.RAY_RUN]}"
        if num_samples is not None:  # the finished Ray experiment stays as it ended
            trials.record_study(study, {trials.NUM_SAMPLES: num_samples})
            settings, run_name = attrs[trials.CONSTANTS], f"ray-{len(study.trials)}"
            run = _build(spec, study, record, settings, experiments, run_name, gpu, False, verbose)
        elif tuner.can_restore(folder):
            # Trials Ray will not continue (it saved the experiment before they started) are
            # interrupted now, so the searcher's count of running trials is true.
            record.interrupt(keep=unfinished_in_ray(folder))
            run = tuner.restore(folder, spec, gpu, verbose)
        else:  # the driver died before Ray saved anything: replace the lost trials
            record.interrupt()
            settings, run_name = attrs[trials.CONSTANTS], f"ray-{len(study.trials)}"
            run = _build(spec, study, record, settings, experiments, run_name, gpu, False, verbose)
        return Outcome(spec, layout, _run(run, spec, study, record, track))


def _unchanged(spec: StudySpec, study: optuna.Study, num_samples: int | None) -> StudySpec:
    """The study file's spec, refused when it changed since the start, with the budget the
    study runs to: ``num_samples`` when given (then the file's own may differ too), else the
    one ``resume --num-samples`` last set, else the file's."""
    started = dict(study.user_attrs[trials.SPEC])
    now = spec.record()
    if num_samples is not None:
        now["num_samples"] = started["num_samples"]
    if now != started:
        more = ""
        if {k for k in now if now[k] != started.get(k)} == {"num_samples"}:
            more = f"; to add trials, `python search.py resume {spec.name} --num-samples N`"
        raise ConfigError(
            f"{spec.path}: changed since study {spec.name!r} started; resume is for recovery, "
            f"not for a new spec (start a new study, or --fresh){more}"
        )
    budget = num_samples if num_samples is not None else trials.budget(study)
    return replace(spec, num_samples=int(budget))


def _check_more(spec: StudySpec, study: optuna.Study, num_samples: int) -> None:
    """``resume --num-samples``: only for a study that finished its trials, and only more."""
    done, before = len(trials.finished(study)), trials.budget(study)
    flag = f"--num-samples {num_samples}"
    if done < before:
        raise ConfigError(
            f"{flag}: study {spec.name!r} has {done} of its {before} trials finished; continue "
            f"it first with `python search.py resume {spec.name}`, then add trials"
        )
    if num_samples <= done:
        raise ConfigError(
            f"{flag}: study {spec.name!r} already has {done} finished trials; ask for more "
            f"than {done} to add trials"
        )


def _prepare(
    spec: StudySpec, layout: Layout, track: Tracking, cpu_only: bool, address: str | None
) -> tuple[Path, float]:
    """What start and resume check before they touch a record: the dataset (prepared), Ray
    (joined or started), the resources a trial asks for and the memory its configurations need
    (``memory_check``), and every node's view of the data
    and the MLflow store. Returns the data folder and the GPU share of a trial."""
    data_root = datasets.prepare(spec.dataset, f"{spec.path}: dataset.root")
    ensure_ray(address)
    gpu = check_resources(spec, cpu_only)
    for line in memory_check.check(spec, gpu, data_root):
        print(line, flush=True)
    nodes.check_cluster(spec, layout, data_root, track.uri)
    nodes.check_weights(f"{spec.space.path}: pretrained", pretrained_backbones(spec.space))
    return data_root, gpu


def _build(
    spec: StudySpec,
    study: optuna.Study,
    record: StudyRecord,
    settings: dict,
    experiments: str,
    run: str,
    gpu: float,
    warm_start: bool,
    verbose: bool = False,
) -> tune.Tuner:
    """A new Ray experiment ``run`` for the study, named on the study for resume."""
    trials.record_study(study, {trials.RAY_RUN: run})
    return tuner.build(spec, record, settings, experiments, run, gpu, warm_start, verbose)


def _delete(location: str) -> None:
    """A study's Ray experiments at ``experiment_path`` (``start --fresh``): a folder or URI."""
    import pyarrow.fs

    filesystem, path = pyarrow.fs.FileSystem.from_uri(
        location if "://" in location else Path(location).as_uri()
    )
    filesystem.delete_dir_contents(path, missing_dir_ok=True)


def _run(
    run: tune.Tuner, spec: StudySpec, study: optuna.Study, record: StudyRecord, track: Tracking
) -> bool:
    """Fit; True when the study reached ``num_samples`` finished trials. A database server or
    MLflow tracking server that went away for longer than the driver waits for it stops the
    driver with one line that says how to continue."""
    try:
        tuner.fit(run)
    except Exception as e:
        hint = (
            f"what was recorded is kept: once it is back, continue with `python search.py "
            f"resume {spec.name} --storage {mask_url(spec.storage)}`"
        )
        if not spec.storage.startswith(SQLITE) and (cause := lost(e)) is not None:
            raise CephtuneError(
                f"{spec.path}: storage: the database was lost mid-study and not back within "
                f"{reconnect_wait():g} s ({mask_url(first_line(cause, with_type=True))}); {hint}"
            ) from None
        if (cause := server_lost(e)) is not None:
            raise CephtuneError(
                f"MLFLOW_TRACKING_URI: the MLflow tracking server {mask_url(track.uri)} failed "
                f"mid-study ({mask_url(first_line(cause, with_type=True))}); {hint}"
            ) from None
        raise
    if len(trials.finished(study)) < spec.num_samples:
        return False  # stopped early (Ctrl-C): leave the running trials for resume
    record.settle()
    return True
