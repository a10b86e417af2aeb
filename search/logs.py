"""What the libraries may print on a user's terminal: their warnings about real problems, not
their routine notices. An error after Ray has started must still be one line on stderr.

- Ray logs "Token authentication is enabled for this Ray cluster" as a WARNING at every local
  start: it is Ray's default security, not a problem, so the notice is dropped (the
  authentication stays on).
- Optuna logs every study it creates or loads at INFO; MLflow its table creation at INFO.
- Reading a saved Ray experiment warns about every trial that had not reported yet: on resume
  those are exactly the ones expected.
- A trial's worker logs each checkpoint it saves at INFO (``trainables.trial`` quiets that in the
  worker).
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


def quiet_libraries() -> None:
    """Keep the libraries' routine notices off stderr (idempotent)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # MLflow sets its loggers' level from this variable when it is imported; a user's own
    # setting wins.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    token_logger = logging.getLogger(RAY_TOKEN_LOGGER)
    if _FILTER not in token_logger.filters:
        token_logger.addFilter(_FILTER)
