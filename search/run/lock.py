"""One driver per study on this machine: ``studies/NAME/lock``, held with ``flock`` while a
``start``, ``resume`` or ``promote`` runs, and released by the kernel when the driver dies."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from search.layout import Layout
from trainables.errors import ConfigError


@contextmanager
def study_lock(layout: Layout, name: str) -> Iterator[None]:
    """Hold the study's lock: a second driver of it on this machine refuses."""
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
