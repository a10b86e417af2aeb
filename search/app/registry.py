"""The contract of a registered cephtune model: what ``promote`` registers and ``predict`` loads.

A promoted model is an MLflow pytorch model (pickle format: the plain module with its
``stride``; cephtune's model code ships with it, so it loads wherever torch and timm are), and
an MLflow pyfunc that answers landmark requests (``trainables.eval.serving``), whose
metadata carries its preprocessing (``trainables.artifacts.ModelMetadata``). It is registered
under the study's name with the alias ``champion`` when its test MRE beats the current
champion's (or there is none), ``challenger`` otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import mlflow.pytorch
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from torch import nn

import trainables
from search.layout import mask_url
from search.records.tracking import Tracking
from trainables.artifacts import FinalDir, ModelMetadata
from trainables.config import TrainConfig
from trainables.errors import ConfigError, first_line
from trainables.eval import serving

TEST_METRIC = "test_mre_mm"  # what ranks promoted models: lower is better
TAG_TEST_TTA = "cephtune.test_tta"  # on the final run: the test-time augmentation tested with


class _ChosenPickle(logging.Filter):
    """Drops mlflow.pytorch's warning that pickle runs code when loaded: the pickle format is
    this module's choice (module doc), and ``promote`` prints no library warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Saving pytorch model by Pickle")


def _save_served(path: str, mlflow_model: Model, **kwargs: Any) -> None:
    """mlflow.pytorch's ``save_model``, then the ``python_function`` flavor pointed at
    cephtune's loader (``trainables.eval.serving``): ``mlflow models serve`` then answers
    landmark requests instead of feeding a dataframe to the network."""
    log, chosen = logging.getLogger("mlflow.pytorch"), _ChosenPickle()
    log.addFilter(chosen)
    try:
        mlflow.pytorch.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
    finally:
        log.removeFilter(chosen)
    mlflow_model.flavors["python_function"]["loader_module"] = serving.LOADER
    mlflow_model.save(str(Path(path) / "MLmodel"))


# What ``Model.log`` calls a flavor module: a name and a ``save_model``.
_SERVED_PYTORCH = SimpleNamespace(__name__="mlflow.pytorch", save_model=_save_served)


def alias_for(test_mre: float, champion_mre: float | None) -> str:
    """``champion`` when the new model is strictly better on test than the current champion
    (or there is none), ``challenger`` otherwise: a tie keeps the champion."""
    if champion_mre is None or test_mre < champion_mre:
        return "champion"
    return "challenger"


def register(
    tracking: Tracking,
    name: str,
    run_id: str,
    model: nn.Module,
    cfg: TrainConfig,
    scores: dict[str, Any],
    final: Path,
) -> tuple[str, str]:
    """Log the model and its test results to the final run, register it as model ``name``,
    and give it the alias ``alias_for`` decides; returns the version and the alias.
    ``scores``: the test results (``TestMetrics.to_dict``); ``final``: the folder with their
    tables and overlays (``FinalDir``)."""
    folder = FinalDir(final)
    with tracking.active(), mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"test_{k}": v for k, v in scores.items() if isinstance(v, float)})
        mlflow.set_tag(TAG_TEST_TTA, scores.get("tta", "none"))
        for table in folder.tables:
            if table.is_file():
                mlflow.log_artifact(str(table), artifact_path="test")
        if folder.overlays.is_dir():
            mlflow.log_artifacts(str(folder.overlays), artifact_path="test/overlays")
        info = Model.log(
            artifact_path=None,
            name="model",
            flavor=_SERVED_PYTORCH,
            pytorch_model=model.eval().cpu(),
            pickle_module=mlflow.pytorch.pickle_module,
            registered_model_name=name,
            metadata=ModelMetadata.describe(model, cfg).to_dict(),
            serialization_format="pickle",
            code_paths=[str(Path(trainables.__file__).parent)],
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "timm", "numpy"],
        )
    version = str(info.registered_model_version)
    alias = alias_for(scores["mre_mm"], _champion_mre(tracking, name))
    tracking.client.set_registered_model_alias(name, alias, version)
    return version, alias


def _champion_mre(tracking: Tracking, name: str) -> float | None:
    try:
        current = tracking.client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None  # no champion yet
    return tracking.client.get_run(current.run_id).data.metrics.get(TEST_METRIC)


def load_registered(tracking: Tracking, uri: str) -> tuple[nn.Module, ModelMetadata]:
    """The model (CPU) at ``uri`` (``models:/NAME@alias``, ``models:/NAME/3``, ``runs:/ID/model``)
    and its metadata; an unknown URI or a model that is not cephtune's is a ``ConfigError``."""
    store = mask_url(tracking.uri)
    with tracking.active():
        try:
            meta = mlflow.models.get_model_info(uri).metadata
        except (MlflowException, OSError) as e:
            raise ConfigError(
                f"model {uri!r} not found in {store}: {mask_url(first_line(e))}"
            ) from None
        metadata = ModelMetadata.from_dict(meta, uri)
        try:
            model = mlflow.pytorch.load_model(uri, map_location="cpu")
        except (MlflowException, OSError) as e:
            raise ConfigError(f"model {uri!r}: cannot load ({mask_url(first_line(e))})") from None
    return model, metadata
