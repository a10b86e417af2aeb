"""The MLflow tracking store of a project: its experiments and runs, written by the driver only.

The store is ``Layout.tracking_uri()``: ``mlruns/mlflow.db`` (artifacts under
``mlruns/artifacts/``) unless ``MLFLOW_TRACKING_URI`` names another (a tracking server). The file
store is never used (MLflow refuses it now). A study's tree of runs is ``search.records.lineage``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from search.layout import SQLITE, TRACKING_ENV, Layout
from trainables.config import RESOLVED_KEYS
from trainables.errors import ConfigError

TAG_PREFIX = "cephtune."  # of every tag cephtune writes; ``cephtune.<key>`` for RESOLVED_KEYS


class Tracking:
    """The store of ``layout``'s project (``uri``) and the runs cephtune writes to it."""

    def __init__(self, layout: Layout, writes: bool = False) -> None:
        """``writes``: this command records runs, and a sqlite store is made at its first use
        (not before: a refused start leaves no ``mlruns/``). A command that only reads
        refuses a sqlite store that does not exist instead of creating an empty one."""
        self.layout = layout
        self.uri = layout.tracking_uri()
        self.writes = writes

    @cached_property
    def client(self) -> MlflowClient:
        self.ready()
        return MlflowClient(self.uri)

    def ready(self) -> None:
        """Before MLflow opens the store: make a sqlite store's folder, or (a reader) refuse
        a sqlite store that is not there."""
        if not self.uri.startswith(SQLITE):
            return
        if self.writes:
            self.layout.tracking_uri(create=True)
        elif not Path(self.uri[len(SQLITE) :]).is_file():
            where = TRACKING_ENV if os.environ.get(TRACKING_ENV) else "the project's MLflow store"
            raise ConfigError(
                f"{where}: no MLflow store at {self.uri[len(SQLITE) :]} (nothing was created; "
                "run this where the study was started, or set MLFLOW_TRACKING_URI)"
            )

    def ensure_experiment(self, name: str) -> str:
        """The id of experiment ``name`` (restored if deleted), created if new."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        return self.client.create_experiment(
            name, artifact_location=self.layout.artifact_location(name)
        )

    def delete_runs(self, name: str) -> int:
        """Delete every run of experiment ``name`` (``start --fresh``); returns the count."""
        found = self.client.get_experiment_by_name(name)
        if found is None:
            return 0
        runs = self.client.search_runs([found.experiment_id], max_results=50000)
        for run in runs:
            self.client.delete_run(run.info.run_id)
        return len(runs)

    def start_run(self, experiment: str, name: str, params: dict, tags: dict[str, str]) -> str:
        """A run for one standalone training; returns its id. Params are logged at once."""
        run = self.client.create_run(self.ensure_experiment(experiment), run_name=name, tags=tags)
        self.client.log_batch(
            run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        )
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: dict, step: int) -> None:
        """Numbers as metrics at ``step``; the resolved precision and device as tags."""
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        stamp = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, stamp, step) for k, v in sorted(numeric.items())],
            tags=resolved_tags(metrics),
        )

    def log_artifact(self, run_id: str, path: Path) -> None:
        self.client.log_artifact(run_id, str(path))

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Point MLflow's fluent API (model logging, the registry) at this store for a block,
        then restore the process settings: ``mlflow.set_tracking_uri`` also writes
        ``MLFLOW_TRACKING_URI`` into the environment, which would otherwise outlive the block."""
        keys = (TRACKING_ENV, "MLFLOW_REGISTRY_URI")
        saved = {k: os.environ.get(k) for k in keys}
        self.ready()
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(saved[TRACKING_ENV])
            mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def server_lost(error: BaseException) -> BaseException | None:
    """The failed HTTP request behind ``error`` (a tracking server that did not answer through
    MLflow's retries, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``), or None."""
    from requests.exceptions import RequestException

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, RequestException):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def resolved_tags(result: dict) -> list[RunTag]:
    """What ``precision: auto`` and the device resolved to, as ``cephtune.<key>`` tags. Tags,
    not params: a run resumed elsewhere may land on another device."""
    return [RunTag(TAG_PREFIX + k, str(result[k])) for k in RESOLVED_KEYS if k in result]
