"""Where a study's state lives: the Optuna RDB storage and the Ray experiment folder.

Relative paths (a relative sqlite URL included) resolve against the current directory, the
project folder the user runs ``search.py`` from.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy.exc
from sqlalchemy.engine import make_url

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
# Two clients opening a fresh PostgreSQL database at once (a driver and an optuna-dashboard, two
# colleagues) both create Optuna's tables; the loser fails with a duplicate type or table. The
# tables exist by then, so opening again succeeds.
CREATE_RACE = (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)
OPEN_ATTEMPTS = 5
# The pip package that provides each SQLAlchemy driver a storage URL may name.
DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary], in cephtune's postgres extra: pip install -e '.[postgres]'",
    "psycopg2": "psycopg2-binary, in cephtune's postgres extra: pip install -e '.[postgres]'",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "mysqldb": "mysqlclient",
    "pymysql": "PyMySQL",
}


def open_storage(url: str, where: str = "storage") -> optuna.storages.RDBStorage:
    """The storage at ``url``, opened once per process: opening one checks its schema, which
    took ~0.6 s of a study's start-up each time (the tuner, the MLflow callback, the summary).

    ``where`` names the setting in errors: ``studies/x.yaml: storage`` or ``--storage``.
    """
    resolved = resolve_url(url)
    found = _OPEN.get(resolved)
    if found is not None and (
        not resolved.startswith(SQLITE) or Path(resolved[len(SQLITE) :]).is_file()
    ):
        return found
    engine = {"connect_args": {"timeout": SQLITE_BUSY_S}} if resolved.startswith(SQLITE) else {}
    for attempt in range(OPEN_ATTEMPTS):
        try:
            _OPEN[resolved] = optuna.storages.RDBStorage(resolved, engine_kwargs=engine)
            return _OPEN[resolved]
        except CREATE_RACE as e:
            if attempt + 1 == OPEN_ATTEMPTS:
                raise _cannot_open(url, where, e) from None
            time.sleep(0.2 * (attempt + 1))
        except ImportError:
            raise ConfigError(_missing_driver(url, where)) from None
        except Exception as e:  # SQLAlchemy raises many types for a bad URL or unreachable server
            raise _cannot_open(url, where, e) from None
    raise AssertionError("unreachable")


def _cannot_open(url: str, where: str, error: Exception) -> ConfigError:
    first = str(error).splitlines()[0] if str(error) else ""
    return ConfigError(
        f"{where} {mask_url(url)!r}: cannot open ({type(error).__name__}: {mask_url(first)})"
    )


def _missing_driver(url: str, where: str) -> str:
    """Which database driver the URL needs and how to install it."""
    try:
        parsed = make_url(url)
        driver, dialect = parsed.get_driver_name(), parsed.get_backend_name()
    except Exception:  # an unknown dialect: SQLAlchemy says so only by raising
        return f"{where} {mask_url(url)!r}: cannot open (no database driver for this URL)"
    package = DRIVER_PACKAGES.get(driver, driver)
    text = (
        f"{where} {mask_url(url)!r}: the {dialect} driver {driver!r} is not installed "
        f"(pip package {package})"
    )
    if dialect == "postgresql":
        text += "; postgresql:// means psycopg (v3), postgresql+psycopg2:// names psycopg2"
    return text


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
