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

from trainables.schema import fail, unknown_key
from trainables.setting import typed


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
    where: str,
    key: str,
    raw: Mapping[str, Any],
    owner: str,
    earlier: Mapping[str, Values],
    order: Sequence[str],
    fixed: Mapping[str, Any],
) -> tuple[Condition, ...]:
    """Check the ``when:`` mapping of parameter ``owner`` (the schema made it a non-empty
    mapping); ``earlier`` are the params before it."""
    conditions = []
    for name, wanted in raw.items():
        ckey = f"{key}.{name}"
        if name not in earlier and name not in fixed:
            if name in order:
                raise fail(
                    where,
                    ckey,
                    f"must name a parameter defined before {owner} in params "
                    "(parameters are sampled in file order)",
                )
            raise unknown_key(where, ckey, [*order, *fixed])
        values = _values(where, ckey, name, wanted)
        if name in fixed:
            for v in values:
                if not same(v, fixed[name]):
                    raise fail(
                        where,
                        ckey,
                        f"can never hold: {name} is fixed to {fixed[name]!r}, got {v!r}",
                    )
            continue  # always holds
        param = earlier[name]
        for v in values:
            if not param.possible(v):
                raise fail(
                    where,
                    ckey,
                    f"can never hold: {v!r} is not a value {name} can take "
                    f"(its values: {param.describe()})",
                )
        conditions.append(Condition(name, values))
    return tuple(conditions)


def _values(where: str, key: str, name: str, wanted: Any) -> tuple[Any, ...]:
    """One value, or a non-empty list meaning any of them; each must fit ``name``'s type."""
    if isinstance(wanted, list):
        if not wanted:
            raise fail(where, key, "must be a value or a non-empty list of values")
        items = wanted
    else:
        items = [wanted]
    return tuple(typed(name, v, where, key) for v in items)
