"""Where a study's state lives: the Optuna RDB storage and the Ray experiment folder.

Relative paths (a relative sqlite URL included) resolve against the current directory, the
project folder the user runs ``search.py`` from.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from trainables.errors import ConfigError

SQLITE = "sqlite:///"


def resolve_url(url: str) -> str:
    """An sqlite URL with an absolute path (its folder created); other URLs unchanged."""
    if not url.startswith(SQLITE):
        return url
    path = Path(url[len(SQLITE) :])
    if not path.is_absolute():
        path = Path.cwd() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLITE + str(path)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    try:
        return optuna.storages.RDBStorage(resolve_url(url))
    except Exception as e:  # SQLAlchemy raises many types for a bad URL or unreachable server
        raise ConfigError(
            f"storage {url!r}: cannot open ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None


def study_exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def experiment_dir(name: str) -> Path:
    """The Ray Tune experiment folder of study ``name``."""
    return Path.cwd() / "studies" / name / "ray"
