"""MLflow: the tracking store, one experiment per study, one run per trial (driver-side only).

Default store: ``sqlite:///<cwd>/mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``;
``MLFLOW_TRACKING_URI`` overrides it. The file store is never used (MLflow refuses it now).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from search.storage import resolve_url
from trainables.config import RESOLVED_KEYS


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return resolve_url(uri) if uri else resolve_url("sqlite:///mlruns/mlflow.db")


def artifact_root() -> Path:
    return Path.cwd() / "mlruns" / "artifacts"


def ensure_experiment(name: str) -> str:
    """The id of the study's experiment, created with artifacts under ``mlruns/`` if new."""
    client = MlflowClient(tracking_uri())
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    location = None
    if "MLFLOW_TRACKING_URI" not in os.environ:
        location = (artifact_root() / name).as_uri()
    return client.create_experiment(name, artifact_location=location)


def delete_runs(name: str) -> int:
    """Delete every run of the study's experiment (``start --fresh``); returns the count."""
    client = MlflowClient(tracking_uri())
    found = client.get_experiment_by_name(name)
    if found is None:
        return 0
    runs = client.search_runs([found.experiment_id], max_results=50000)
    for run in runs:
        client.delete_run(run.info.run_id)
    return len(runs)


def start_run(experiment: str, name: str, params: dict, tags: dict[str, str]) -> str:
    """A run for one standalone training; returns its id. Params are logged at once."""
    client = MlflowClient(tracking_uri())
    run = client.create_run(ensure_experiment(experiment), run_name=name, tags=tags)
    client.log_batch(
        run.info.run_id,
        params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())],
    )
    return run.info.run_id


def log_metrics(run_id: str, metrics: dict, step: int) -> None:
    """Numbers as metrics at ``step``; the resolved precision and device as tags."""
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    stamp = int(time.time() * 1000)
    MlflowClient(tracking_uri()).log_batch(
        run_id,
        metrics=[Metric(k, v, stamp, step) for k, v in sorted(numeric.items())],
        tags=resolved_tags(metrics),
    )


def resolved_tags(result: dict) -> list[RunTag]:
    """What ``precision: auto`` and the device resolved to, as ``cephtune.<key>`` tags. Tags,
    not params: a run resumed elsewhere may land on another device."""
    return [RunTag(f"cephtune.{k}", str(result[k])) for k in RESOLVED_KEYS if k in result]


def log_artifact(run_id: str, path: Path) -> None:
    MlflowClient(tracking_uri()).log_artifact(run_id, str(path))


def end_run(run_id: str, status: str = "FINISHED") -> None:
    MlflowClient(tracking_uri()).set_terminated(run_id, status)


@contextmanager
def active(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for a block, then restore the process settings.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment, which
    would otherwise outlive the block.
    """
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
