"""The one exception hierarchy of cephtune.

It lives at the bottom of the data flow (``trainables``) so that both the trainable and the
orchestration in ``search`` can raise it without ``trainables`` reaching back up. The CLI turns
every ``CephtuneError`` into one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class CephtuneError(Exception):
    """A problem with the user's input or environment, reported as one line."""


class ConfigError(CephtuneError):
    """A study, space or training configuration breaks a rule."""


class DataError(CephtuneError):
    """A dataset is missing, malformed or inconsistent."""
