"""The walk along a pydantic error's location through the declared settings types: which
field, type, metadata and allowed keys the location names. ``trainables.schema`` words the
error from what it finds."""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import Discriminator, Tag
from pydantic.fields import FieldInfo


@dataclass
class Where:
    """What the walk along an error's location found there."""

    path: str = ""
    meta: list[Any] = field(default_factory=list)  # the field's and its type's metadata
    tp: Any = Any  # the type at the location
    allowed: tuple[str, ...] = ()  # the keys of the mapping that holds it
    discriminator: Any = None


def locate(root: Any, loc: tuple) -> Where:
    """What the declared type ``root`` has at an error's location ``loc``."""
    at = Where(tp=root)
    for part in loc:
        _unwrap(at)
        if _is_union(at.tp):  # a tagged union: this part is the tag, not a key
            at.tp = _member(at.tp, part, at.discriminator)
            continue
        fields = _fields(at.tp)
        if fields is not None:
            at.allowed, at.path = tuple(fields), join(at.path, str(part))
            if part not in fields:
                return Where(at.path, allowed=at.allowed)
            info = fields[part]
            at.tp, at.meta = info.annotation, list(info.metadata)
            at.discriminator = info.discriminator
        elif part == "[key]":
            break
        elif get_origin(at.tp) is dict:
            at.path, at.tp = join(at.path, str(part)), get_args(at.tp)[1]
            at.meta, at.discriminator, at.allowed = [], None, ()
        elif get_origin(at.tp) in (list, tuple):
            at.path, at.tp = f"{at.path}[{part}]", get_args(at.tp)[0]
            at.meta, at.discriminator = [], None
        else:
            at.path, at.tp, at.meta = join(at.path, str(part)), Any, []
    _unwrap(at)
    return at


def _unwrap(at: Where) -> None:
    """Strip ``Annotated`` (keeping its metadata) and ``Optional`` off the type at ``at``."""
    while True:
        if get_origin(at.tp) is Annotated:
            at.tp, *extra = get_args(at.tp)
            at.meta.extend(extra)
            for m in extra:
                found = m.discriminator if isinstance(m, (FieldInfo, Discriminator)) else None
                at.discriminator = found or at.discriminator
        elif _is_union(at.tp) and type(None) in get_args(at.tp):
            rest = [a for a in get_args(at.tp) if a is not type(None)]
            at.tp = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007
        else:
            return


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _fields(tp: Any) -> dict[str, FieldInfo] | None:
    """The fields of a pydantic model or dataclass, else None."""
    return getattr(tp, "model_fields", None) or getattr(tp, "__pydantic_fields__", None)


def _member(union: Any, tag: Any, discriminator: Any) -> Any:
    """The member of a tagged union that ``tag`` selects."""
    for member in get_args(union):
        probe = Where(tp=member)
        _unwrap(probe)
        if any(isinstance(m, Tag) and m.tag == tag for m in probe.meta):
            return member
        if isinstance(discriminator, str) and tag in _literal(probe.tp, discriminator):
            return member
    return Any


def _literal(tp: Any, name: str) -> tuple[Any, ...]:
    fields = _fields(tp) or {}
    return get_args(fields[name].annotation) if name in fields else ()


def union_tags(union: Any, discriminator: str) -> list[str]:
    return [str(t) for m in get_args(union) for t in _literal(stripped(m), discriminator)]


def stripped(tp: Any) -> Any:
    probe = Where(tp=tp)
    _unwrap(probe)
    return probe.tp


def join(path: str, key: str) -> str:
    """``path`` and ``key`` as one key path (``a.b``, ``a[0]``)."""
    if not key:
        return path
    if not path or key.startswith("["):
        return f"{path}{key}"
    return f"{path}.{key}"
