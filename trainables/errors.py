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


def first_line(error: BaseException, with_type: bool = False) -> str:
    """The first non-empty line of ``error``'s message (a library's exception can span pages),
    for a one-line report; its type's name when the message is empty, or before it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if with_type:
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text or type(error).__name__


MESSAGE_LIMIT = 2000  # characters of an error line: a quoted value can be any size


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` as one printable line: line breaks and other control characters escaped (a
    file name may hold a newline), cut to ``limit`` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) > limit:
        text = f"{text[: limit - 40]}… ({len(text) - limit + 40} more characters)"
    return text
