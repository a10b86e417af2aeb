"""Progressive resolution: the first epochs of a run at lower input sizes, then ``image_size``.

``progressive_stages`` lists ``[epochs, size]`` pairs (``[[3, 256], [3, 512]]``) or the same as
text, ``"3@256,3@512"`` (Optuna's categorical choices must be scalars, so a space names stages as
text; that is also the ``value`` a config records). The stages run in order, then the run goes
on at ``image_size`` until ``epochs``: early epochs, and so early ASHA rungs, are cheap, and
resolution becomes a fidelity. The weights carry over from stage to stage (every model is fully
convolutional); the heatmaps stay at ``heatmap_stride`` and sigma follows each stage's size
(``trainables.shape.sigma_for``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainables.shape import Size

SPELLINGS = "[[epochs, size], ...] or 'E@SIZE,E@SIZE'"


@dataclass(frozen=True)
class Stages:
    """``(epochs, size)`` pairs, parsed once from pairs or text."""

    pairs: tuple[tuple[int, Size], ...]

    @classmethod
    def parse(cls, value: Any) -> Stages:
        """``value`` (pairs or text) as ``Stages``; ValueError if it is neither (an empty list
        or text is no stages)."""
        if isinstance(value, Stages):
            return value
        pairs = _pairs(value)
        if pairs is None:
            raise ValueError(f"must be {SPELLINGS}, got {value!r}")
        return cls(pairs)

    @property
    def value(self) -> str:
        """What a record holds: ``"E@SIZE,E@SIZE"``."""
        return ",".join(f"{epochs}@{size}" for epochs, size in self.pairs)

    def rule(self) -> str | None:
        """The rule these stages break (epochs >= 1, every size valid), or None."""
        for epochs, size in self.pairs:
            if epochs < 1:
                return f"must give every stage >= 1 epochs, got {epochs}@{size}"
            rule = size.rule()
            if rule:
                return f"stage {epochs}@{size}: size {rule}"
        return None

    def size_at(self, epoch: int, image_size: Size) -> Size:
        """The input size of ``epoch`` (1-based): its stage's, or ``image_size`` after them."""
        end = 0
        for epochs, size in self.pairs:
            end += epochs
            if epoch <= end:
                return size
        return image_size

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def __str__(self) -> str:
        return self.value

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """A settings field of this type: parsed and checked once, recorded as ``value``; no
        stages (an empty list or text) is None."""
        from trainables.schema import parsed_type_schema

        return parsed_type_schema(cls.parse, empty_is_none=True)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        pair = {"type": "array", "minItems": 2, "maxItems": 2}
        return {
            "anyOf": [
                {"type": "string", "pattern": r"^(\s*\d+@[^,@]+)(,\s*\d+@[^,@]+)*$"},
                {"type": "array", "items": pair},
            ]
        }


def _pairs(value: Any) -> tuple[tuple[int, Size], ...] | None:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        pairs: list[Any] = []
        for part in text.split(","):
            epochs, sep, size = part.partition("@")
            if not sep or not epochs.strip().isdigit():
                return None
            size = size.strip()
            pairs.append([int(epochs), int(size) if size.isdigit() else size])
    elif isinstance(value, (list, tuple)):
        pairs = list(value)
    else:
        return None
    out = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            return None
        epochs, size = pair
        if isinstance(epochs, bool) or not isinstance(epochs, int):
            return None
        try:
            out.append((epochs, Size.parse(size)))
        except ValueError:
            return None
    return tuple(out)
