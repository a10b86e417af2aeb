"""Aspect-preserving letterbox of a greyscale image into the network input (a square or a
rectangle: a portrait input fits a portrait cephalogram with little padding).

Coordinates use the pixel-centre convention: pixel ``i`` covers ``[i - 0.5, i + 0.5)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainables.errors import DataError
from trainables.shape import Size, dims


@dataclass(frozen=True)
class Letterbox:
    """Aspect-preserving resize into the input, padded centred. Maps points both ways."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int

    @classmethod
    def fit(cls, width: int, height: int, size: Size | int | str | tuple[int, int]) -> Letterbox:
        """Fit a ``width`` x ``height`` image into ``size`` (N, ``(W, H)`` or ``"WxH"``)."""
        out_w, out_h = dims(size)
        s = min(out_w / width, out_h / height)
        new_w, new_h = max(1, min(out_w, round(width * s))), max(1, min(out_h, round(height * s)))
        return cls(new_w / width, new_h / height, (out_w - new_w) // 2, (out_h - new_h) // 2)

    def forward(self, xy: np.ndarray) -> np.ndarray:
        out = np.array(xy, dtype=np.float64)
        out[..., 0] = (out[..., 0] + 0.5) * self.scale_x - 0.5 + self.pad_x
        out[..., 1] = (out[..., 1] + 0.5) * self.scale_y - 0.5 + self.pad_y
        return out

    def inverse(self, xy: np.ndarray) -> np.ndarray:
        out = np.array(xy, dtype=np.float64)
        out[..., 0] = (out[..., 0] - self.pad_x + 0.5) / self.scale_x - 0.5
        out[..., 1] = (out[..., 1] - self.pad_y + 0.5) / self.scale_y - 0.5
        return out


def load_image(
    path: Path | BinaryIO, size: Size | int | str | tuple[int, int]
) -> tuple[np.ndarray, Letterbox]:
    """Decode to greyscale and letterbox into ``size`` (N, ``(W, H)``, ``"WxH"``): uint8 (H, W)."""
    try:
        with Image.open(path) as im:
            im = im.convert("L")
            box = Letterbox.fit(im.width, im.height, size)
            new_w = round(im.width * box.scale_x)
            new_h = round(im.height * box.scale_y)
            small = im.resize((new_w, new_h), Image.BILINEAR, reducing_gap=3.0)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None
    return place(np.asarray(small), box, size), box


def place(
    small: np.ndarray, box: Letterbox, size: Size | int | str | tuple[int, int]
) -> np.ndarray:
    """The resized image ``small`` centred on a zero canvas of ``size``."""
    out_w, out_h = dims(size)
    new_h, new_w = small.shape
    canvas = np.zeros((out_h, out_w), dtype=np.uint8)
    canvas[box.pad_y : box.pad_y + new_h, box.pad_x : box.pad_x + new_w] = small
    return canvas
