"""Where a project's state lives: every path and default URL, from one project root; and how
a URL is shown (``mask_url``).

The project folder is where the user runs ``search.py`` (``Layout.here()``); ``resume`` uses the
folder its study was started in, recorded with the study. Code asks the layout for a path or a
URL and never rebuilds one from the current directory::

    studies/optuna.db                 Optuna storage (default; ``storage:`` overrides it)
    studies/NAME/ray/                 Ray Tune experiment (``ray-<n>`` after a restart);
                                      ``experiment_path/NAME/ray`` when the study sets one
    studies/NAME/lock                 one driver per study on this machine
    studies/NAME/best.yaml, final/    a promoted configuration, its final run and test tables
    studies/NAME/candidates/          promote --trials K: the re-trained candidates
    studies/NAME/report/              the HTML report
    mlruns/mlflow.db, mlruns/artifacts/NAME/   MLflow store (``MLFLOW_TRACKING_URI`` overrides)
    runs/CONFIG/                      ``search.py train`` checkpoints
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SQLITE = "sqlite:///"
DEFAULT_STORAGE = "sqlite:///studies/optuna.db"
# The Optuna storage of every command when set (as MLFLOW_TRACKING_URI is MLflow's): the
# default of ``--storage`` and of a study file without ``storage``.
STORAGE_ENV = "CEPHTUNE_STORAGE"
DEFAULT_TRACKING = "sqlite:///mlruns/mlflow.db"
TRACKING_ENV = "MLFLOW_TRACKING_URI"


@dataclass(frozen=True)
class Layout:
    """The state of the project rooted at ``root`` (an absolute folder)."""

    root: Path

    @classmethod
    def here(cls) -> Layout:
        return cls(Path.cwd())

    def url(self, url: str, create: bool = False) -> str:
        """``url`` with a relative sqlite path made absolute under the root; other URLs
        unchanged. ``create``: the file's folder is made (only what writes a store asks: a
        command that reads never creates anything)."""
        if not url.startswith(SQLITE):
            return url
        path = Path(url[len(SQLITE) :])
        if not path.is_absolute():
            path = self.root / path
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        return SQLITE + str(path)

    def tracking_uri(self, create: bool = False) -> str:
        """The MLflow store: ``MLFLOW_TRACKING_URI`` when set, else ``mlruns/mlflow.db``
        (``create``: a sqlite file's folder is made)."""
        return self.url(os.environ.get(TRACKING_ENV) or DEFAULT_TRACKING, create=create)

    def artifact_location(self, experiment: str) -> str | None:
        """Where a new experiment keeps its artifacts: under ``mlruns/`` with the default
        store; a tracking server or a store the user chose decides for itself (None)."""
        if os.environ.get(TRACKING_ENV):
            return None
        return (self.root / "mlruns" / "artifacts" / experiment).as_uri()

    def study_dir(self, name: str) -> Path:
        return self.root / "studies" / name

    def experiments(self, name: str, experiment_path: str | None = None) -> str:
        """Where study ``name`` keeps its Ray Tune experiments (Ray's ``storage_path``):
        ``experiment_path/NAME`` (a shared folder or a URI) when the study sets one, else
        ``studies/NAME`` in the project."""
        if experiment_path is None:
            return str(self.study_dir(name))
        return f"{experiment_path.rstrip('/')}/{name}"

    def lock_file(self, name: str) -> Path:
        return self.study_dir(name) / "lock"

    def best_yaml(self, name: str) -> Path:
        return self.study_dir(name) / "best.yaml"

    def final_dir(self, name: str) -> Path:
        return self.study_dir(name) / "final"

    def candidates_dir(self, name: str) -> Path:
        return self.study_dir(name) / "candidates"

    def report_dir(self, name: str) -> Path:
        return self.study_dir(name) / "report"

    def runs_dir(self, config_name: str) -> Path:
        """Where ``search.py train CONFIG`` writes its checkpoints by default."""
        return self.root / "runs" / config_name


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for messages, tags and stored specs."""
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", url)
