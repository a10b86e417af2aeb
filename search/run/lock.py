"""One driver per study: ``studies/NAME/lock``, held with ``flock`` while a ``start``, ``resume``
or ``promote`` runs, and released by the kernel when the driver dies; and, with a PostgreSQL
storage, a session-level advisory lock in that database, which holds across machines.

The advisory lock lives on a connection of its own that the driver keeps open while it runs:
PostgreSQL releases it when that connection closes, so when the driver exits, is killed, or its
machine dies (TCP keepalives tell the server within about 30 s of a machine that went silent).
A restart of the server drops the connection, and with it the lock, while the driver rides
through the restart (``search.records.storage``): until that driver ends, a second one is no
longer refused.
"""

from __future__ import annotations

import fcntl
import os
import socket
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from search.layout import Layout, mask_url
from trainables.errors import ConfigError, first_line

LOCK_SPACE = 0x63657068  # first key of cephtune's advisory locks ("ceph"); the second: the study
# libpq's TCP keepalives on the lock's connection: a driver's machine that went silent (no
# crash, so no FIN) frees the lock in about 25 s.
_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3}  # fmt: skip


@contextmanager
def study_lock(layout: Layout, name: str, storage_url: str | None = None) -> Iterator[None]:
    """Hold the study's lock: a second driver of it refuses (on this machine, and on any
    machine when ``storage_url`` is a PostgreSQL database)."""
    with _file_lock(layout, name):
        if storage_url is not None and _is_postgres(storage_url):
            with _advisory_lock(storage_url, name):
                yield
        else:
            yield


@contextmanager
def _file_lock(layout: Layout, name: str) -> Iterator[None]:
    path = layout.lock_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
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


def _is_postgres(url: str) -> bool:
    from sqlalchemy.engine import make_url

    return make_url(url).get_backend_name() == "postgresql"


@contextmanager
def _advisory_lock(url: str, name: str) -> Iterator[None]:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    me = f"cephtune driver pid {os.getpid()} on {socket.gethostname()}"
    engine = sqlalchemy.create_engine(
        url, poolclass=NullPool, connect_args={"application_name": me[:63], **_KEEPALIVE}
    )
    keys = {"space": LOCK_SPACE, "study": zlib.crc32(name.encode()) & 0x7FFFFFFF}
    try:
        connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise ConfigError(
            f"storage {mask_url(url)!r}: cannot open ({mask_url(first_line(e, with_type=True))})"
        ) from None
    try:
        held = connection.execute(
            sqlalchemy.text(
                "SELECT pg_try_advisory_lock(CAST(:space AS integer), CAST(:study AS integer))"
            ),
            keys,
        ).scalar()
        if not held:
            owner = connection.execute(
                sqlalchemy.text(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.classid::bigint = :space AND l.objid::bigint = :study AND l.objsubid = 2"
                ),
                keys,
            ).scalar()
            raise ConfigError(
                f"study {name!r} is already being run by {owner or 'another driver'} "
                f"(its lock in {mask_url(url)})"
            )
        yield
    finally:
        _close(connection)
        engine.dispose()


def _close(connection) -> None:
    """Close the lock's connection; after a server restart it is already broken, and there
    is nothing left to release."""
    import sqlalchemy

    try:
        connection.close()
    except sqlalchemy.exc.SQLAlchemyError:
        pass  # the server dropped it (restart): the lock went with it
