"""Network input sizes: a square ``N`` or a rectangle ``[W, H]`` / ``"WxH"``, and the heatmap
geometry that follows from a size and a stride.

A size's canonical value (what a config holds, what MLflow and Optuna record) is the int ``N``
for a square and the text ``"WxH"`` for a rectangle: Optuna's categorical choices must be
scalars, so a space names rectangles as text.
"""

from __future__ import annotations

import re
from typing import Any

MULTIPLE = 32  # every model halves the input five times
MAX_SIZE = 1024
STRIDES = (4, 2, 1)  # heatmap strides every model offers
_TEXT = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")

Size = int | str


def canonical(value: Any) -> Size | None:
    """``value`` (an int, ``[W, H]`` or ``"WxH"``) as the int or ``"WxH"`` text it stands for;
    None when it is none of them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            w, h = value
        else:
            return None
    elif isinstance(value, str) and _TEXT.match(value):
        w, h = (int(g) for g in _TEXT.match(value).groups())
    else:
        return None
    return w if w == h else f"{w}x{h}"


def dims(value: Size | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``(width, height)`` of a size in any of its forms."""
    found = canonical(value)
    if found is None:
        raise ValueError(f"not an image size: {value!r}")
    if isinstance(found, int):
        return found, found
    w, h = _TEXT.match(found).groups()
    return int(w), int(h)


def size_rule(value: Size) -> str | None:
    """The rule a (canonical) size breaks, or None."""
    w, h = dims(value)
    if not (w > 0 and h > 0):
        return f"must be > 0, got {value}"
    if w % MULTIPLE or h % MULTIPLE:
        return f"must be a multiple of {MULTIPLE}, got {value}"
    if max(w, h) > MAX_SIZE:
        return f"must be at most {MAX_SIZE} px a side, got {value}"
    return None


def long_side(value: Size) -> int:
    return max(dims(value))


def heatmap_dims(value: Size, stride: int) -> tuple[int, int]:
    """``(width, height)`` of the heatmaps a model outputs for inputs of ``value``."""
    w, h = dims(value)
    return w // stride, h // stride


def adaptive_sigma(value: Size, stride: int = 4) -> float:
    """The guides' sigma in heatmap pixels (0.75 at 128 px, 1.5 at 256 px, 3.0 at 512 px at
    stride 4) for the long side; it scales with 4 / stride, so that the target keeps its width
    in input pixels whatever the stride."""
    return 1.5 * long_side(value) / 256.0 * 4 / stride


def sigma_for(sigma: float | None, value: Size, stride: int) -> float:
    """A configured ``sigma`` (heatmap pixels at stride 4) at ``stride``, or the adaptive one."""
    if sigma is None:
        return adaptive_sigma(value, stride)
    return sigma * 4 / stride
