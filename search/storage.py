"""Where a study's state lives: the Optuna RDB storage and the Ray experiment folder.

Relative paths (a relative sqlite URL included) resolve against the current directory, the
project folder the user runs ``search.py`` from.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna

from trainables.errors import ConfigError

SQLITE = "sqlite:///"
# How long a write waits for another writer's lock on an sqlite storage (sqlite's default is
# 5 s): an optuna-dashboard note, a second study, a backup tool must not crash a running study.
SQLITE_BUSY_S = 120


def resolve_url(url: str) -> str:
    """An sqlite URL with an absolute path (its folder created); other URLs unchanged."""
    if not url.startswith(SQLITE):
        return url
    path = Path(url[len(SQLITE) :])
    if not path.is_absolute():
        path = Path.cwd() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLITE + str(path)


_OPEN: dict[str, optuna.storages.RDBStorage] = {}


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The storage at ``url``, opened once per process: opening one checks its schema, which
    took ~0.6 s of a study's start-up each time (the tuner, the MLflow callback, the summary)."""
    resolved = resolve_url(url)
    found = _OPEN.get(resolved)
    if found is not None and (
        not resolved.startswith(SQLITE) or Path(resolved[len(SQLITE) :]).is_file()
    ):
        return found
    try:
        engine = {"connect_args": {"timeout": SQLITE_BUSY_S}} if resolved.startswith(SQLITE) else {}
        _OPEN[resolved] = optuna.storages.RDBStorage(resolved, engine_kwargs=engine)
        return _OPEN[resolved]
    except Exception as e:  # SQLAlchemy raises many types for a bad URL or unreachable server
        first = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError(
            f"storage {mask_url(url)!r}: cannot open ({type(e).__name__}: {mask_url(first)})"
        ) from None


def study_exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def experiment_dir(name: str) -> Path:
    """The Ray Tune experiment folder of study ``name``."""
    return Path.cwd() / "studies" / name / "ray"


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs, tags and messages."""
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", url)


@contextmanager
def study_lock(name: str) -> Iterator[None]:
    """Hold the study's lock: a second ``start``/``resume`` of it on this machine refuses."""
    folder = Path.cwd() / "studies" / name
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise ConfigError(f"study {name!r} is already being run by {owner}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
