"""Conditions on earlier parameters: the ``when:`` of a space parameter or of one of its cases.

A condition maps parameter names to the value (or list of values) each must have taken in the
trial; all of them must hold. Only parameters sampled *before* the one being decided can be
named, because a define-by-run space samples in file order. A parameter that was not sampled in
a trial (its own condition failed) satisfies no condition. A condition on a ``fixed`` setting is
decided once, when the file is loaded: it must hold, so it is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from search.spec.yamlfile import Checker
from trainables.config import coerce, field_type


class Values(Protocol):
    """What a condition needs of an earlier parameter: the values it can take."""

    def possible(self, value: Any) -> bool: ...

    def describe(self) -> str: ...


class _Unknown:
    """A value the sampler picks at trial time (used when checking warm-start points)."""

    def __repr__(self) -> str:
        return "<sampled>"


UNKNOWN: Any = _Unknown()
_ABSENT = object()


@dataclass(frozen=True)
class Condition:
    """``name`` took one of ``values`` in this trial."""

    name: str
    values: tuple[Any, ...]

    def __str__(self) -> str:
        if len(self.values) == 1:
            return f"{self.name} = {self.values[0]}"
        return f"{self.name} in [{', '.join(map(str, self.values))}]"


def describe(when: Sequence[Condition]) -> str:
    return " and ".join(map(str, when))


def same(a: Any, b: Any) -> bool:
    """Value equality as a trainable sees it: 8 == 8.0, but True != 1 and 8 != '8'."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9)
    return type(a) is type(b) and a == b


def holds(when: Sequence[Condition], values: Mapping[str, Any]) -> bool | None:
    """True when every condition holds on ``values``; None when that hangs on an UNKNOWN value."""
    unknown = False
    for cond in when:
        value = values.get(cond.name, _ABSENT)
        if value is UNKNOWN:
            unknown = True
        elif not any(same(value, v) for v in cond.values):
            return False
    return None if unknown else True


def parse_when(
    check: Checker,
    key: str,
    raw: Any,
    owner: str,
    earlier: Mapping[str, Values],
    order: Sequence[str],
    fixed: Mapping[str, Any],
) -> tuple[Condition, ...]:
    """Validate a ``when:`` mapping of parameter ``owner``; ``earlier`` are the params before it."""
    raw = check.mapping(raw, key)
    if not raw:
        raise check.fail(key, "must name at least one earlier parameter")
    conditions = []
    for name, wanted in raw.items():
        ckey = f"{key}.{name}"
        if name not in earlier and name not in fixed:
            if name in order:
                raise check.fail(
                    ckey,
                    f"must name a parameter defined before {owner} in params "
                    "(parameters are sampled in file order)",
                )
            check.keys({name: None}, [*order, *fixed], prefix=f"{key}.")
        values = _values(check, ckey, name, wanted)
        if name in fixed:
            for v in values:
                if not same(v, fixed[name]):
                    raise check.fail(
                        ckey, f"can never hold: {name} is fixed to {fixed[name]!r}, got {v!r}"
                    )
            continue  # always holds
        param = earlier[name]
        for v in values:
            if not param.possible(v):
                raise check.fail(
                    ckey,
                    f"can never hold: {v!r} is not a value {name} can take "
                    f"(its values: {param.describe()})",
                )
        conditions.append(Condition(name, values))
    return tuple(conditions)


def _values(check: Checker, key: str, name: str, wanted: Any) -> tuple[Any, ...]:
    """One value, or a non-empty list meaning any of them; each must fit ``name``'s type."""
    if isinstance(wanted, list):
        if not wanted:
            raise check.fail(key, "must be a value or a non-empty list of values")
        items = wanted
    else:
        items = [wanted]
    return tuple(coerce(str(check.path), key, v, field_type(name)) for v in items)
