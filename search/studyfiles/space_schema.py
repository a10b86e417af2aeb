"""The schema of a space file (``spaces/*.yaml``): its keys, each parameter's distribution, and
the rules a distribution keeps whatever setting it searches (low < high, a log scale above 0, a
step that fits the range, a case's scale the base's). What each value must be for its setting
is the trainable's own declaration, which ``search.studyfiles.space_file`` checks it against;
the published JSON Schema (``spaces/space.schema.json``) lists those settings, so an editor
completes a parameter's name and checks a fixed value's type.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from trainables.schema import STRICT, Rule, rule_error


class _File(BaseModel):
    model_config = STRICT


When = Annotated[
    dict[str, Any],
    Field(
        min_length=1,
        description="sampled only where every named earlier parameter (or fixed setting) took "
        "this value, or one of this list",
    ),
    Rule("must name at least one earlier parameter", ("too_short",)),
]


def _cases(case: Any) -> Any:
    return Annotated[
        list[case],
        Field(
            min_length=1,
            description="dependent ranges: the first case whose `when` holds overrides the base",
        ),
        Rule("must be a non-empty list of {when: ..., <overrides>}", ("list_type", "too_short")),
    ]


Choices = Annotated[
    list[Any],
    Field(min_length=1, description="the values to choose from (a trainable setting's values)"),
    Rule("must be a non-empty list", ("list_type", "too_short")),
]


def _override(what: str) -> Any:
    """A case's override of the base ``what``; not given keeps the base's."""
    return Field(None, description=f"replaces the base's {what} where the case holds")


class FloatCase(_File):
    when: When
    low: float = _override("low")
    high: float = _override("high")
    step: Annotated[float, Field(gt=0)] | None = _override("step (null: none)")
    log: bool = _override("log (must repeat it)")


class IntCase(_File):
    when: When
    low: int = _override("low")
    high: int = _override("high")
    step: Annotated[int, Field(gt=0)] | None = _override("step (null: none)")
    log: bool = _override("log (must repeat it)")


class ChoiceCase(_File):
    when: When
    choices: Choices


class _Range(_File):
    """The rules of a float or int range, for the base and for each case's overrides."""

    @model_validator(mode="after")
    def _ranges(self) -> Any:
        broken = _range_rule(*self.bounds(None))
        if broken:
            raise rule_error(broken[1], key=broken[0])
        for i, case in enumerate(self.cases or ()):
            if "log" in case.model_fields_set and case.log != self.log:
                raise rule_error(
                    f"must match {{at}}.log ({str(self.log).lower()}): Optuna cannot change a "
                    "parameter's scale between trials",
                    key=f"cases[{i}].log",
                )
            broken = _range_rule(*self.bounds(case))
            if broken:
                raise rule_error(broken[1], key=f"cases[{i}].{broken[0]}")
        return self

    def bounds(self, case: Any) -> tuple[Any, Any, bool, Any]:
        """``(low, high, log, step)`` of the base, or where ``case`` holds."""
        given = case.model_fields_set if case is not None else set()
        low, high, log, step = (
            getattr(case if k in given else self, k) for k in ("low", "high", "log", "step")
        )
        return low, high, log, step


def _range_rule(low: Any, high: Any, log: bool, step: Any) -> tuple[str, str] | None:
    if low >= high:
        return "low", f"must be < high, got low={low} high={high}"
    if log and low <= 0:
        return "low", f"must be > 0 for a log scale, got {low}"
    if step is not None:
        if log:
            return "step", "cannot be combined with log: true"
        if step > high - low:
            return "step", f"must be <= high - low ({high - low:g}), got {step}"
    return None


class FloatParam(_Range):
    type: Literal["float"]
    low: float
    high: float
    log: bool = Field(False, description="sample on a log scale (low > 0, no step)")
    step: Annotated[float, Field(gt=0)] | None = None
    when: When | None = None
    cases: _cases(FloatCase) | None = None


class IntParam(_Range):
    type: Literal["int"]
    low: int
    high: int
    log: bool = Field(False, description="sample on a log scale (low > 0, no step)")
    step: Annotated[int, Field(gt=0)] | None = None
    when: When | None = None
    cases: _cases(IntCase) | None = None


class CategoricalParam(_File):
    type: Literal["categorical"]
    choices: Choices
    when: When | None = None
    cases: _cases(ChoiceCase) | None = None


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]  # noqa: UP007


def _warm_tag(value: Any) -> str | None:
    return "name" if isinstance(value, str) else "points" if isinstance(value, list) else None


WarmStart = Annotated[
    Union[  # noqa: UP007
        Annotated[Literal["guides"], Tag("name")],
        Annotated[list[dict[str, Any]], Tag("points")],
    ],
    Discriminator(_warm_tag),
    Rule("must be 'guides' or a list of parameter mappings", ("union_tag_not_found",)),
]


class SpaceFile(_File):
    """A space file: what a study searches, what it fixes, and where the search starts."""

    params: Annotated[
        dict[str, Param],
        Field(
            min_length=1,
            description="the searched parameters, sampled in this order; each name is a "
            "trainable config key",
        ),
        Rule("must name at least one parameter to search", ("too_short",)),
    ]
    fixed: dict[str, Any] | None = Field(
        None, description="trainable settings, the same for every trial"
    )
    warm_start: WarmStart | None = Field(
        None,
        description="points a study evaluates before its sampler takes over: `guides` (the "
        "guides' configurations inside the space) or a list of points",
    )
