"""What the driver process sets for itself, in one place: library logging and environment.

The libraries may print their warnings about real problems on a user's terminal, not their
routine notices, so that an error after Ray has started is still one line on stderr:

- Ray logs "Token authentication is enabled for this Ray cluster" as a WARNING at every local
  start: it is Ray's default security, not a problem, so the notice is dropped (the
  authentication stays on).
- Optuna logs every study it creates or loads at INFO; MLflow its table creation at INFO.
- Reading a saved Ray experiment warns about every trial that had not reported yet: on resume
  those are exactly the ones expected.
- A trial's worker logs each checkpoint it saves at INFO (``trainables.trial`` quiets that in the
  worker).

Environment variables the driver sets, which a local Ray's workers inherit:

- ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``: Ray's loggers are chosen in the RunConfig (no
  TensorBoard logger: tensorboardX would import torch into the driver).
- ``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=1``: Ray 2.60 leaves ``CUDA_VISIBLE_DEVICES`` alone for an
  actor given no GPU unless this is set, so a CPU trial would see every GPU (the trial also
  follows its resources itself: ``trainables.device``).
- ``MLFLOW_LOGGING_LEVEL=WARNING`` unless the user set it.

Other state that lives as long as the process, because Ray pickles callbacks and searchers
apart: the table of live Ray trials (``search.run.searcher``), the record of each study that
runs (``search.records.study_record``) and the opened Optuna storages
(``search.records.storage``).
"""

from __future__ import annotations

import logging
import os

RAY_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"
RAY_TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"


class _DropRayTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return RAY_TOKEN_NOTICE not in record.getMessage()


_FILTER = _DropRayTokenNotice()


def prepare_driver() -> None:
    """Quiet the libraries' routine notices and set the driver's environment (idempotent)."""
    import optuna

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")
    # Ray warns on stderr when a trial checkpoints every epoch (its experiment snapshot is then
    # forced each time); checkpoint_every: 1 is the user's choice, and the cost is benchmarked.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # MLflow sets its loggers' level from this variable when it is imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    token_logger = logging.getLogger(RAY_TOKEN_LOGGER)
    if _FILTER not in token_logger.filters:
        token_logger.addFilter(_FILTER)
