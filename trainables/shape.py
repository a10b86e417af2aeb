"""Network input sizes: the ``Size`` value type, parsed once from a square ``N`` or a rectangle
``[W, H]`` / ``"WxH"``, and the heatmap geometry that follows from a size and a stride.

A config holds a ``Size``; what it records (MLflow, Optuna, checkpoints) is its ``value``: the
int ``N`` for a square and the text ``"WxH"`` for a rectangle, because Optuna's categorical
choices must be scalars, so a space names rectangles as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MULTIPLE = 32  # every model halves the input five times
MAX_SIZE = 1024
STRIDES = (4, 2, 1)  # heatmap strides every model offers
_TEXT = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
SPELLINGS = "an int, [W, H] or 'WxH'"


@dataclass(frozen=True)
class Size:
    """A network input of ``width`` x ``height`` pixels."""

    width: int
    height: int

    @classmethod
    def parse(cls, value: Any) -> Size:
        """``value`` (a ``Size``, an int, ``[W, H]`` or ``"WxH"``) as a ``Size``; ValueError
        when it is none of them. Its rule (``rule``) is not checked here."""
        if isinstance(value, Size):
            return value
        found = _dims(value)
        if found is None:
            raise ValueError(f"must be {SPELLINGS}, got {value!r}")
        return cls(*found)

    @property
    def value(self) -> int | str:
        """What a record holds: ``N`` for a square, ``"WxH"`` for a rectangle."""
        return self.width if self.width == self.height else f"{self.width}x{self.height}"

    @property
    def long_side(self) -> int:
        return max(self.width, self.height)

    def heatmap(self, stride: int) -> tuple[int, int]:
        """``(width, height)`` of the heatmaps a model outputs for inputs of this size."""
        return self.width // stride, self.height // stride

    def rule(self) -> str | None:
        """The rule this size breaks as a network input, or None."""
        if not (self.width > 0 and self.height > 0):
            return f"must be > 0, got {self}"
        if self.width % MULTIPLE or self.height % MULTIPLE:
            return f"must be a multiple of {MULTIPLE}, got {self}"
        if self.long_side > MAX_SIZE:
            return f"must be at most {MAX_SIZE} px a side, got {self}"
        return None

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """A settings field of this type: parsed and checked once, recorded as ``value``
        (pydantic is imported here, not with the module: the command line's start-up)."""
        from trainables.schema import parsed_type_schema

        return parsed_type_schema(cls.parse)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        side = {"type": "integer", "multipleOf": MULTIPLE, "minimum": MULTIPLE}
        side["maximum"] = MAX_SIZE
        return {
            "anyOf": [
                side,
                {"type": "array", "items": side, "minItems": 2, "maxItems": 2},
                {"type": "string", "pattern": r"^\s*\d+\s*[xX]\s*\d+\s*$"},
            ]
        }


def _dims(value: Any) -> tuple[int, int] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return value[0], value[1]
        return None
    if isinstance(value, str) and _TEXT.match(value):
        w, h = _TEXT.match(value).groups()
        return int(w), int(h)
    return None


def dims(value: Size | int | str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``(width, height)`` of a size; a size that comes from outside a config (a registered
    model's metadata) is parsed here."""
    size = Size.parse(value)
    return size.width, size.height


def adaptive_sigma(value: Size | int | str, stride: int = 4) -> float:
    """The guides' sigma in heatmap pixels (0.75 at 128 px, 1.5 at 256 px, 3.0 at 512 px at
    stride 4) for the long side; it scales with 4 / stride, so that the target keeps its width
    in input pixels whatever the stride."""
    return 1.5 * Size.parse(value).long_side / 256.0 * 4 / stride


def sigma_for(sigma: float | None, value: Size | int | str, stride: int) -> float:
    """A configured ``sigma`` (heatmap pixels at stride 4) at ``stride``, or the adaptive one."""
    if sigma is None:
        return adaptive_sigma(value, stride)
    return sigma * 4 / stride
