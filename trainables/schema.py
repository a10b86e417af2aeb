"""Declared settings: what a field says beyond pydantic's own constraints, and the one
translation of a pydantic ``ValidationError`` into cephtune's one-line ``ConfigError``.

Every settings file (a study, a space, a training config) is a pydantic model: each field
declares its type, range, choices and default once; pydantic checks them and writes the JSON
Schema. Pydantic's messages are not ours, so ``explain`` turns the first error into
``KEY RULE, got VALUE`` (``resources.gpu must be <= 1: ..., got 2``), with a did-you-mean for
an unknown key. Two vocabularies: a file's structure speaks YAML (``an integer``, ``true or
false``, ``a mapping``), a trainable setting its type (``must be a float``), as the README's
key table does.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from trainables.errors import ConfigError
from trainables.schema_walk import Where, join, locate, stripped, union_tags

# What YAML gives is what a setting gets: no coercion (8.5 is no int, "1" no number, 1 no
# bool; an int is a float), no unknown key, no infinity.
STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
Words = Literal["file", "trainable"]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Rule:
    """A field's rule in words, where pydantic's would not say it: replaces the message of the
    errors of ``types`` (every type, when empty) at the field itself."""

    text: str
    types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Why:
    """Why a bound holds, after the bound: ``must be <= 1: a trial trains on one GPU``; only
    after the bounds of ``types`` (every bound, when empty)."""

    text: str
    types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Shown:
    """A default in words, where its value alone would not say it (``null = auto``); the key
    table shows these."""

    text: str


def rule_error(rule: str, key: str = "") -> PydanticCustomError:
    """A rule a validator found broken; ``key`` names the setting below the validated value
    that breaks it (a cross-key rule names the key it blames). ``{at}`` in ``rule`` becomes
    the validated value's own key path."""
    return PydanticCustomError("rule", "{rule}", {"rule": rule, "key": key})


def parsed_type_schema(parse: Callable[[Any], Any], empty_is_none: bool = False) -> Any:
    """The pydantic core schema of a value type a settings file writes as text or numbers:
    ``parse`` reads it (a ``ValueError`` is the one-line rule), its ``rule()`` checks it, and it
    is recorded as its ``value``. ``empty_is_none``: a parsed value that is empty becomes None."""
    from pydantic_core import core_schema

    def validate(value: Any) -> Any:
        try:
            parsed = parse(value)
        except ValueError as e:
            raise rule_error(str(e)) from None
        rule = parsed.rule()
        if rule:
            raise rule_error(rule)
        return parsed if parsed or not empty_is_none else None

    return core_schema.no_info_plain_validator_function(
        validate,
        serialization=core_schema.plain_serializer_function_ser_schema(lambda s: s.value),
    )


def explain(error: ValidationError, root: Any, words: Words = "file", prefix: str = "") -> str:
    """The first of ``error``'s errors as one line without the file: an unknown key first, then
    a missing one, then the first rule broken in the file's order. ``root`` is the validated
    type; ``prefix`` goes before every key path."""
    errors = error.errors(include_url=False)
    first = min(errors, key=lambda e: _RANK.get(e["type"], 2))
    return _line(first, root, words, prefix)


def validated(model: type[M], raw: Any, where: str) -> M:
    """``raw`` (a file's mapping) checked by ``model``; the first broken rule is one
    ``ConfigError`` line naming ``where``."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{where}: {explain(e, model)}") from None


def fail(where: str, key: str, rule: str) -> ConfigError:
    """A broken rule outside the schema (a space's conditions): ``FILE: KEY RULE``."""
    return ConfigError(f"{where}: {key} {rule}")


def unknown_key(where: str, path: str, allowed: Any, noun: str = "key") -> ConfigError:
    """``FILE: unknown key 'PATH'`` with the allowed name closest to its last part, or the
    allowed names."""
    return ConfigError(f"{where}: {_unknown(path, path.rpartition('.')[2], allowed, noun)}")


def base_type(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and ``Optional``: ``float`` for ``Positive | None``."""
    return stripped(tp)


def shown(value: Any) -> str:
    """A value as a message shows it: YAML's null, else Python's repr."""
    return "null" if value is None else repr(value)


_RANK = {"extra_forbidden": 0, "unexpected_keyword_argument": 0, "missing": 1}
_MAPPING = ("dict_type", "model_type", "model_attributes_type", "dataclass_type")
_FILE_TYPES = {
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "string_type": "must be a non-empty string",
    "string_too_short": "must be a non-empty string",
    "list_type": "must be a list",
    **{kind: "must be a mapping" for kind in _MAPPING},
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}
_BOUNDS["less_than_equal"] = "<="
_NUMERIC_TEXT = "YAML reads 1e-4 as text: write 1.0e-4"


def _said(at: Where, kind: str) -> str | None:
    """The field's own rule in words for an error of ``kind``, if it declares one."""
    return next((m.text for m in at.meta if isinstance(m, Rule) and _of(m, kind)), None)


def _why(at: Where, kind: str) -> str:
    return "".join(m.text for m in at.meta if isinstance(m, Why) and _of(m, kind))


def _of(rule: Rule | Why, kind: str) -> bool:
    return not rule.types or kind in rule.types


def _line(e: dict[str, Any], root: Any, words: Words, prefix: str) -> str:
    at = locate(root, e["loc"])
    path, kind, ctx, value = prefix + at.path, e["type"], e.get("ctx") or {}, e["input"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        noun = "trainable key" if words == "trainable" else "key"
        return _unknown(path, str(e["loc"][-1]), at.allowed, noun)
    if kind == "missing":
        return f"missing required key '{path}'"
    if e["loc"] and e["loc"][-1] == "[key]":  # pydantic's place for a mapping's key itself
        return f"key '{path}' must be text, got {shown(value)}"
    if kind == "rule":  # "{at}" in a validator's rule: where the validated value is
        path, rule = join(path, ctx.get("key", "")), ctx["rule"].replace("{at}", path)
    elif kind in ("union_tag_invalid", "union_tag_not_found") and isinstance(at.discriminator, str):
        path = join(path, at.discriminator)
        if kind == "union_tag_not_found":
            return f"missing required key '{path}'"
        tags = ", ".join(union_tags(at.tp, at.discriminator))
        rule = f"must be one of {tags}, got {ctx['tag']!r}"
    elif _said(at, kind):
        rule = f"{_said(at, kind)}, got {shown(value)}"
    else:
        rule = _rule(kind, ctx, value, at, words, e["msg"])
    return f"{path} {rule}" if path else rule


def _rule(kind: str, ctx: dict, value: Any, at: Where, words: Words, msg: str) -> str:
    name = getattr(at.tp, "__name__", str(at.tp))
    if words == "trainable" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if at.tp is float else value
    numeric_text = isinstance(value, str) and _is_number(value)
    if kind in ("int_type", "float_type", "bool_type", "string_type") and words == "trainable":
        hint = f" (a string: {_NUMERIC_TEXT})" if numeric_text and kind != "bool_type" else ""
        return f"must be a {name}, got {shown(value)}{hint}"
    if kind == "float_type":
        if numeric_text:
            return f"must be a number, got the string {value!r} ({_NUMERIC_TEXT})"
        return f"must be a finite number, got {shown(value)}"
    if kind == "finite_number":
        return f"must be {'finite' if words == 'trainable' else 'a finite number'}, got {value}"
    if kind in _FILE_TYPES:
        return f"{_FILE_TYPES[kind]}, got {shown(value)}"
    if kind in _BOUNDS:
        bound = next(v for k, v in ctx.items() if k in ("gt", "ge", "lt", "le"))
        return f"must be {_BOUNDS[kind]} {bound:g}{_why(at, kind)}, got {shown(value)}"
    if kind == "literal_error":
        choices = ", ".join(map(str, get_args(at.tp)))
        return f"must be one of {choices}, got {shown(value)}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} items, got {shown(value)}"
    return f"{msg.replace('Input should be', 'must be')}, got {shown(value)}"


def _unknown(path: str, key: str, allowed: Any, noun: str) -> str:
    allowed = [str(a) for a in allowed]
    hint = difflib.get_close_matches(key, allowed, n=1)
    label = "known" if noun == "trainable key" else "allowed"
    tip = f" (did you mean {hint[0]!r}?)" if hint else f"; {label}: {', '.join(allowed)}"
    return f"unknown {noun} '{path if noun == 'key' else key}'{tip}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
