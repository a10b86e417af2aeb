"""Aspect-preserving letterbox of a greyscale image into the network input (a square or a
rectangle: a portrait input fits a portrait cephalogram with little padding).

Coordinates use the pixel-centre convention: pixel ``i`` covers ``[i - 0.5, i + 0.5)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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


# Bit depths a greyscale image of more than 8 bits is taken to hold: the smallest that holds its
# largest value. DICOM exports keep 10, 12 or 14 significant bits in a 16-bit PNG or TIFF.
BIT_DEPTHS = (8, 10, 12, 14, 16)
# Modes PIL's own conversion reads right: 8 bits a channel (RGB and RGBA by luma), a palette.
EIGHT_BIT = ("L", "LA", "RGB", "RGBA", "RGBX", "P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV")
DEPTH_NAMES = {"L": "8-bit grey", "LA": "8-bit grey", "1": "1-bit", "P": "palette", "PA": "palette"}


def _wide(im: Image.Image) -> tuple[np.ndarray, float]:
    """The pixel values of a wider-than-8-bit grey image, and the value that is white in it."""
    values = np.asarray(im, dtype=np.float64)
    if values.ndim != 2:
        raise OSError(f"image mode {im.mode} is not one cephtune reads")
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0)
    top = float(values.max(initial=0.0))
    if im.mode == "F" and top <= 1.0:
        return values, 1.0
    depth = next((b for b in BIT_DEPTHS if top <= 2**b - 1), None)
    return values, float(2**depth - 1) if depth is not None else top


EXIF_ORIENTATION = 0x0112  # the EXIF tag: 1 stored upright, 2-8 mirrored and/or turned
TURNED_SIDEWAYS = (5, 6, 7, 8)  # the orientations that swap width and height


def orientation(im: Image.Image) -> int:
    """The EXIF orientation of ``im`` (1 when it has none, or a value outside 1-8). A PNG's
    EXIF may follow its pixels, so PIL may decode the image to find it."""
    value = im.getexif().get(EXIF_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) of ``im`` as shown, turned by its EXIF orientation."""
    width, height = im.size
    return (height, width) if orientation(im) in TURNED_SIDEWAYS else (width, height)


def to_grey(im: Image.Image) -> Image.Image:
    """``im`` as it is shown (turned upright by its EXIF orientation, as browsers and
    annotation tools show a photographed film), in 8-bit greyscale (mode L) on one intensity
    scale whatever its mode: 8-bit grey, RGB and RGBA (luma), palette, 1-bit, and 16- or
    32-bit integer and float grey, which are scaled from their bit depth (``BIT_DEPTHS``: 4095
    is white in a 12-bit image, 65535 in a 16-bit one; a float image in [0, 1] by 255) instead
    of clipped at 255, as PIL's ``convert("L")`` does, which reads a 16-bit cephalogram as a
    white sheet."""
    if orientation(im) != 1:
        im = ImageOps.exif_transpose(im)
    if im.mode in EIGHT_BIT:
        return im.convert("L")
    values, white = _wide(im)
    scaled = np.rint(values * (255.0 / max(white, 1e-12))).clip(0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def bit_depth(im: Image.Image) -> str:
    """What ``data check`` reports of an image's pixels: ``8-bit grey``, ``RGB``, ``12-bit
    grey`` (the depth ``to_grey`` scales from), ``float grey``, ``palette``…"""
    if im.mode in DEPTH_NAMES:
        return DEPTH_NAMES[im.mode]
    if im.mode in EIGHT_BIT:
        return im.mode
    if im.mode == "F":
        return "float grey"
    return f"{round(math.log2(_wide(im)[1] + 1))}-bit grey"


def load_image(
    path: Path | BinaryIO, size: Size | int | str | tuple[int, int]
) -> tuple[np.ndarray, Letterbox]:
    """Decode to greyscale (``to_grey``) and letterbox into ``size`` (N, ``(W, H)``,
    ``"WxH"``): uint8 (H, W)."""
    try:
        with Image.open(path) as im:
            im = to_grey(im)
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
