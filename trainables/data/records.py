"""What a dataset reader provides, and the records every reader produces.

A reader (``trainables.data.aariz``, ``trainables.data.isbi``) only knows its folder layout and
file formats; ``trainables.data.formats`` turns its pieces into records and
``trainables.data.check`` inspects the same pieces without stopping at the first problem.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from trainables.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
ANNOTATORS = ("senior", "junior")  # who annotated each image
# What a study or config may ask for: one annotator, or the mean of both.
ANNOTATOR_CHOICES = (*ANNOTATORS, "mean")
SPLITS = ("train", "valid", "test")
TRAIN_ON = ("train", "train+valid")  # the split(s) a model learns from (a final model: both)


@dataclass(frozen=True)
class Record:
    """One annotated image: landmarks (K, 2) in original pixels (NaN = missing), mm per pixel."""

    ceph_id: str
    image: Path
    landmarks: np.ndarray
    pixel_size: float


@dataclass(frozen=True)
class SplitIndex:
    """The images of one split, sorted by id, and where each annotator's files live."""

    images: list[tuple[str, Path]]
    annotation_dirs: dict[str, Path]  # annotator -> folder; the folder may not exist

    def annotation_dir(self, annotator: str) -> Path:
        folder = self.annotation_dirs[annotator]
        if not folder.is_dir():
            raise DataError(f"{folder}: folder missing")
        return folder


Landmarks = dict[str, tuple[float, float]]


@dataclass(frozen=True)
class DatasetFormat:
    """One dataset layout: its landmark symbols and the readers for its files."""

    name: str
    symbols: tuple[str, ...]
    annotation_suffix: str
    pixel_size_source: str  # named in errors about a missing pixel size
    index: Callable[[Path, str], SplitIndex]
    read_annotation: Callable[[Path], Landmarks]  # symbol -> (x, y); raises DataError
    pixel_sizes: Callable[[Path, Sequence[str]], dict[str, float]]  # may lack some ids

    def annotation_file(self, folder: Path, ceph_id: str) -> Path:
        return folder / f"{ceph_id}{self.annotation_suffix}"

    def to_array(self, marks: Mapping[str, tuple[float, float]], path: Path) -> np.ndarray:
        """(K, 2) coordinates in symbol order; absent symbols are NaN, unknown ones an error."""
        unknown = sorted(set(marks) - set(self.symbols))
        if unknown:
            raise DataError(f"{path}: unknown landmark symbol {unknown[0]!r}")
        return np.array([marks.get(s, (math.nan, math.nan)) for s in self.symbols], dtype=float)


def find_dir(parent: Path, name: str) -> Path:
    """``parent/name`` matched case-insensitively; the exact path when nothing matches."""
    exact = parent / name
    if exact.is_dir() or not parent.is_dir():
        return exact
    for p in sorted(parent.iterdir()):
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return exact


def require_dir(parent: Path, name: str) -> Path:
    """Like ``find_dir`` but a missing folder is a ``DataError``."""
    folder = find_dir(parent, name)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder missing")
    return folder


def list_images(folder: Path) -> list[tuple[str, Path]]:
    """(id, path) of every image in ``folder`` sorted by id; none is a ``DataError``."""
    images = sorted(
        (p.stem, p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def verify_image(path: Path) -> tuple[int, int]:
    """(width, height) of an image whose file is complete, or a ``DataError`` naming it.

    A PNG's chunk checksums are verified without decoding it (1.1 ms for a 1935 x 2400
    cephalogram, against 47 ms to decode it); PIL's verify sees no truncation of a JPEG or BMP,
    so those are read through (a JPEG at 1/8 scale, 11 ms at that size).
    """
    try:
        with Image.open(path) as im:
            size = im.size
            if im.format == "PNG":
                im.verify()
            else:
                if im.format == "JPEG":
                    im.draft("L", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
    except (OSError, SyntaxError, ValueError, struct.error, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None
    return size


def check_inside(
    xy: np.ndarray, size: tuple[int, int], symbols: Sequence[str], path: Path, image: Path
) -> None:
    """Every annotated landmark of ``path`` lies on its ``image`` (missing ones are NaN)."""
    width, height = size
    for symbol, (x, y) in zip(symbols, xy, strict=True):
        if math.isnan(x) or math.isnan(y):
            continue
        if not (0 <= x < width and 0 <= y < height):
            raise DataError(
                f"{path}: landmark {symbol!r} must lie inside the {width}x{height} image "
                f"{image.name}, got ({x:g}, {y:g})"
            )
