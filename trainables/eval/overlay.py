"""Landmark overlays: a cephalogram with predicted (and ground-truth) landmarks, as a PNG.

Coordinates use the pixel-centre convention of ``trainables.data.letterbox``, so a point keeps its
place on the image whatever the display scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from trainables.data.letterbox import to_grey
from trainables.errors import DataError

LONG_SIDE = 1024  # px of the overlay's long side: landmarks and labels readable on screen
# Orange and sky blue stay apart for red-green colour-blind readers; yellow error lines.
PRED_COLOUR = (255, 110, 20)
TRUTH_COLOUR = (40, 190, 255)
LINE_COLOUR = (255, 230, 0)
OUTLINE = (0, 0, 0)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except ImportError:  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _valid(p: np.ndarray) -> bool:
    return bool(math.isfinite(p[0]) and math.isfinite(p[1]))


def draw_overlay(
    image_path: Path,
    pred_xy: np.ndarray,
    symbols: Sequence[str],
    out_path: Path,
    truth_xy: np.ndarray | None = None,
    title: str | None = None,
    long_side: int = LONG_SIDE,
) -> Path:
    """Write ``out_path`` (PNG, RGB): the image scaled to ``long_side`` px with the landmarks.

    ``pred_xy`` and ``truth_xy`` are (K, 2) in original-image pixels, in the order of
    ``symbols``; a NaN point (a landmark without ground truth) is left out. With ``truth_xy``
    a line joins each prediction to its ground truth. Returns ``out_path``.
    """
    pred = np.asarray(pred_xy, dtype=np.float64)
    if pred.shape != (len(symbols), 2):
        raise ValueError(f"pred_xy must be ({len(symbols)}, 2) for the symbols, got {pred.shape}")
    truth = None if truth_xy is None else np.asarray(truth_xy, dtype=np.float64)
    if truth is not None and truth.shape != pred.shape:
        raise ValueError(f"truth_xy must be {pred.shape} like pred_xy, got {truth.shape}")
    try:
        with Image.open(image_path) as im:
            # Greyscale first: the picture the model saw, whatever the file's colour mode.
            grey = to_grey(im)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise DataError(f"{image_path}: unreadable image ({e})") from None
    scale = long_side / max(grey.width, grey.height)
    size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
    canvas = grey.resize(size, Image.BILINEAR).convert("RGB")
    sx, sy = size[0] / grey.width, size[1] / grey.height

    def shown(p: np.ndarray) -> tuple[float, float]:
        return (p[0] + 0.5) * sx - 0.5, (p[1] + 0.5) * sy - 0.5

    draw = ImageDraw.Draw(canvas)
    radius = max(3, round(long_side / 200))
    font = _font(max(10, round(long_side / 70)))

    def dot(p: np.ndarray, colour: tuple[int, int, int]) -> None:
        x, y = shown(p)
        box = (x - radius, y - radius, x + radius, y + radius)
        draw.ellipse(box, fill=colour, outline=OUTLINE)

    if truth is not None:
        for p, t in zip(pred, truth, strict=True):
            if _valid(p) and _valid(t):
                draw.line([shown(p), shown(t)], fill=LINE_COLOUR, width=max(1, radius // 3))
        for t in truth:
            if _valid(t):
                dot(t, TRUTH_COLOUR)
    for p, symbol in zip(pred, symbols, strict=True):
        if _valid(p):
            dot(p, PRED_COLOUR)
            x, y = shown(p)
            draw.text(
                (x + radius + 2, y - radius - 2),
                symbol,
                fill=PRED_COLOUR,
                font=font,
                stroke_width=1,
                stroke_fill=OUTLINE,
            )
    legend = [(title, (255, 255, 255))] if title else []
    legend.append(("predicted", PRED_COLOUR))
    if truth is not None:
        legend.append(("ground truth", TRUTH_COLOUR))
    line_height = font.size + 4 if hasattr(font, "size") else 14
    for i, (text, colour) in enumerate(legend):
        draw.text(
            (6, 6 + i * line_height),
            text,
            fill=colour,
            font=font,
            stroke_width=1,
            stroke_fill=OUTLINE,
        )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path, format="PNG")
    return out_path
