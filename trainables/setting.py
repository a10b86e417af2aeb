"""One trainable setting checked on its own, by its declaration in ``TrainConfig``: what a
space checks its fixed values, choices and range bounds with (``setting``: the whole rule), so
that a bad value fails the file rather than every trial, and the values its conditions and
warm-start points name (``typed``: the type only; whether the space can give them is the
space's to say).
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import TypeAdapter, ValidationError

from trainables.config import TrainConfig
from trainables.errors import ConfigError
from trainables.schema import STRICT, base_type, explain
from trainables.shape import Size


def rule(name: str, value: Any) -> str | None:
    """The rule ``value`` breaks as setting ``name`` (``must be a multiple of 32, got 80``),
    or None."""
    try:
        _adapter(name).validate_python(value)
    except ValidationError as e:
        return explain(e, _declared(name), "trainable")
    return None


def setting(name: str, value: Any, where: str, key: str) -> Any:
    """``value`` as trainable setting ``name``, checked by its declaration (a space's fixed
    value, choice, bound or condition), in the form a record holds; a broken rule names
    ``key`` in ``where``."""
    adapter = _adapter(name)
    try:
        return adapter.dump_python(adapter.validate_python(value))
    except ValidationError as e:
        raise ConfigError(f"{where}: {explain(e, _declared(name), 'trainable', key)}") from None


def typed(name: str, value: Any, where: str, key: str) -> Any:
    """``value`` of setting ``name``'s type (an image size parsed), in the form a record holds;
    a wrong type names ``key`` in ``where``."""
    adapter = _adapter(name, plain=True)
    try:
        return adapter.dump_python(adapter.validate_python(value))
    except ValidationError as e:
        raise ConfigError(
            f"{where}: {explain(e, _plain(_declared(name)), 'trainable', key)}"
        ) from None


def kind(name: str) -> str:
    """The Python type of setting ``name`` (``int`` for an image size: a square's side), as
    a space's range must fit it."""
    found = base_type(_declared(name))
    if get_origin(found) is Literal:
        found = type(get_args(found)[0])
    return "int" if found is Size else found.__name__


def _declared(name: str) -> Any:
    info = TrainConfig.model_fields[name]
    return Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation


def _plain(tp: Any) -> Any:
    """``tp`` without its constraints: a name's ``Literal`` is ``str``, a positive float a
    float; ``Optional`` stays."""
    if get_origin(tp) is Annotated:
        return _plain(get_args(tp)[0])
    if get_origin(tp) is Literal:
        return type(get_args(tp)[0])
    if get_origin(tp) in (Union, types.UnionType):
        return Union[tuple(_plain(a) for a in get_args(tp))]  # noqa: UP007
    return tp


@functools.cache
def _adapter(name: str, plain: bool = False) -> TypeAdapter:
    declared = _plain(_declared(name)) if plain else _declared(name)
    if dataclasses.is_dataclass(base_type(declared)):  # a value type parses itself
        return TypeAdapter(declared)
    return TypeAdapter(declared, config=STRICT)
