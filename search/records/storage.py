"""The Optuna RDB storage: opened once per process, with the driver a URL needs named when it
is missing, and a fresh PostgreSQL database opened by two clients at once survived.

URLs arrive resolved (``Layout.url``: a relative sqlite path made absolute).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna
import sqlalchemy.event
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from search.layout import SQLITE, mask_url
from search.studyfiles.study import NAME_RULE, valid_name
from trainables.errors import ConfigError, first_line

# How long a write waits for another writer's lock on an sqlite storage (sqlite's default is
# 5 s): an optuna-dashboard note, a second study, a backup tool must not crash a running study.
SQLITE_BUSY_S = 120

_OPEN: dict[str, optuna.storages.RDBStorage] = {}
# Two clients opening a fresh PostgreSQL database at once (a driver and an optuna-dashboard, two
# colleagues) both create Optuna's tables; the loser fails with a duplicate type or table. The
# tables exist by then, so opening again succeeds.
CREATE_RACE = (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)
OPEN_ATTEMPTS = 5
# How long a lost database server may take to come back mid-study before the driver stops
# (seconds; ``CEPHTUNE_DB_WAIT_S`` overrides it).
RECONNECT_S = 60
WAIT_ENV = "CEPHTUNE_DB_WAIT_S"
# The pip package that provides each SQLAlchemy driver a storage URL may name.
DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary], in cephtune's postgres extra: pip install -e '.[postgres]'",
    "psycopg2": "psycopg2-binary, in cephtune's postgres extra: pip install -e '.[postgres]'",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "mysqldb": "mysqlclient",
    "pymysql": "PyMySQL",
}


def open_storage(
    url: str, where: str = "storage", must_exist: bool = False
) -> optuna.storages.RDBStorage:
    """The storage at ``url`` (resolved), opened once per process: opening one checks its
    schema, which took ~0.6 s of a study's start-up each time (the tuner, the MLflow callback,
    the summary). The cache is process state that Ray's separately pickled callbacks share.

    ``where`` names the setting in errors: ``studies/x.yaml: storage`` or ``--storage``.
    ``must_exist``: a sqlite file that is not there is refused, not created (every command
    but ``start`` reads a storage a study made).
    """
    if "://" not in url:
        raise ConfigError(
            f"{where}: {url!r} is not a database URL; for a file write "
            f"sqlite:///{url} (relative to the project) or sqlite:////absolute/path.db"
        )
    if must_exist and url.startswith(SQLITE) and not Path(url[len(SQLITE) :]).is_file():
        raise ConfigError(
            f"{where}: no Optuna storage at {url[len(SQLITE) :]} (nothing was created; "
            "`start` makes a study's storage)"
        )
    resolved = url
    found = _OPEN.get(resolved)
    if found is not None and (
        not resolved.startswith(SQLITE) or Path(resolved[len(SQLITE) :]).is_file()
    ):
        return found
    if resolved.startswith(SQLITE):
        engine: dict = {"connect_args": {"timeout": SQLITE_BUSY_S}}
    else:  # a server restarted mid-study left dead connections in the pool: test each first
        engine = {"pool_pre_ping": True}
    for attempt in range(OPEN_ATTEMPTS):
        try:
            storage = optuna.storages.RDBStorage(resolved, engine_kwargs=engine)
            if not resolved.startswith(SQLITE):
                sqlalchemy.event.listen(storage.engine, "do_connect", _reconnect)
            _OPEN[resolved] = storage
            return storage
        except CREATE_RACE as e:
            if attempt + 1 == OPEN_ATTEMPTS:
                raise _cannot_open(url, where, e) from None
            time.sleep(0.2 * (attempt + 1))
        except ImportError:
            raise ConfigError(_missing_driver(url, where)) from None
        except Exception as e:  # SQLAlchemy raises many types for a bad URL or unreachable server
            raise _cannot_open(url, where, e) from None
    raise AssertionError("unreachable")


def reconnect_wait() -> float:
    return float(os.environ.get(WAIT_ENV) or RECONNECT_S)


def _reconnect(dialect, record, cargs: tuple, cparams: dict):
    """A new connection to a database server, waiting up to ``reconnect_wait()`` for a server
    that refuses: with ``pool_pre_ping`` it lets a study ride through a restart of its server
    (the connections in the pool die with it; new ones are refused until it is back)."""
    deadline = time.monotonic() + reconnect_wait()
    while True:
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def lost(error: BaseException) -> BaseException | None:
    """The database error behind ``error`` (a server that went away and did not come back in
    time, an Optuna write that failed with it), or None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _cannot_open(url: str, where: str, error: Exception) -> ConfigError:
    return ConfigError(
        f"{where} {mask_url(url)!r}: cannot open ({mask_url(first_line(error, with_type=True))})"
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


def open_study(name: str, url: str, where: str = "--storage") -> optuna.Study:
    """The study ``name`` in the storage at ``url`` (resolved). The name is checked first:
    commands use ``studies/NAME``."""
    if not valid_name(name):
        raise ConfigError(f"study name {name!r} {NAME_RULE}")
    storage = open_storage(url, where, must_exist=True)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = ", ".join(sorted(s.study_name for s in storage.get_all_studies())) or "none"
        raise ConfigError(
            f"study {name!r} not found in {mask_url(url)} (studies: {known})"
        ) from None
