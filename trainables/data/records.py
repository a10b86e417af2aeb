"""What a dataset reader provides, and the records every reader produces.

A reader (``trainables.data.aariz``, ``isbi``, ``coco``, ``csv_table``) only knows its layout and
file formats; ``trainables.data.formats`` turns its pieces into records and
``trainables.data.check`` inspects the same pieces without stopping at the first problem.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainables.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
ANNOTATORS = ("senior", "junior")  # who annotated each image
# What a study or config may ask for: one annotator, or the mean of both.
ANNOTATOR_CHOICES = (*ANNOTATORS, "mean")
SPLITS = ("train", "valid", "test")
TRAIN_ON = ("train", "train+valid")  # the split(s) a model learns from (a final model: both)


def read_annotation_text(path: Path, encoding: str | None = None) -> str:
    """The text of the annotation file ``path``, or a ``DataError`` naming it: missing, a
    folder, unreadable (permissions, I/O). A ``UnicodeDecodeError`` is the reader's to word."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise DataError(f"{path}: annotation missing") from None
    except IsADirectoryError:
        raise DataError(f"{path}: a folder, not an annotation file") from None
    except OSError as e:
        raise DataError(f"{path}: unreadable annotation ({e.strerror or e})") from None


def check_new_folder(out: Path, what: str, empty_ok: bool = False) -> None:
    """Refuse an output folder that cannot be made, naming it: one that exists (or, with
    ``empty_ok``, is not an empty folder), a file in its place or in its path, one whose
    nearest existing folder is not writable. ``what``: the command (``data synth``)."""
    out = Path(out)
    if out.is_dir() and empty_ok and not any(out.iterdir()):
        return
    if out.exists() or out.is_symlink():
        kind = "a folder that is not empty" if out.is_dir() else "a file"
        raise ConfigError(f"{out}: exists ({kind}); {what} writes a new folder")
    above = out.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise ConfigError(f"{out}: {above} is a file, not a folder; {what} cannot write there")
    if not os.access(above, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: {above} is not writable; {what} cannot write there")


@dataclass(frozen=True)
class Record:
    """One annotated image: landmarks (K, 2) in original pixels (NaN = missing), mm per pixel."""

    ceph_id: str
    image: Path
    landmarks: np.ndarray
    pixel_size: float


Landmarks = dict[str, tuple[float, float]]
ONE_ANNOTATION = "annotation"  # the one source of a format with one annotation per image


class AnnotationFolder:
    """One annotator's folder of per-image files (``<id><suffix>``), read by ``read``."""

    def __init__(self, folder: Path, suffix: str, read: Callable[[Path], Landmarks]) -> None:
        self.folder, self.suffix, self._read = folder, suffix, read

    def check(self) -> None:
        """A ``DataError`` when the folder is missing."""
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: folder missing")

    def read(self, ceph_id: str) -> tuple[str, Landmarks]:
        """(where, symbol -> (x, y)) of image ``ceph_id``; raises ``DataError``."""
        self.check()
        path = self.folder / f"{ceph_id}{self.suffix}"
        return str(path), self._read(path)


class AnnotationTable:
    """Landmarks of every image of a split, parsed from one file (COCO JSON, CSV)."""

    def __init__(self, source: Path, marks: Mapping[str, Landmarks]) -> None:
        self.source, self.marks = source, marks

    def check(self) -> None:
        """Nothing: the file was parsed (and refused if broken) when the split was indexed."""

    def read(self, ceph_id: str) -> tuple[str, Landmarks]:
        if ceph_id not in self.marks:
            raise DataError(f"{self.source}: no annotation for image {ceph_id!r}")
        return f"{self.source} (image {ceph_id!r})", self.marks[ceph_id]


@dataclass(frozen=True)
class SplitIndex:
    """The images of one split, sorted by id, where their landmarks are, and their pixel sizes.

    ``annotations`` maps each annotator to its source (Aariz and ISBI have a senior and a junior
    folder; COCO and CSV one file, ``ONE_ANNOTATION``). ``pixel_sizes`` reads mm per pixel by
    id when called (it may lack some ids, and raises ``DataError`` for a broken source, which
    ``pixel_size_source`` names).
    """

    images: list[tuple[str, Path]]
    annotations: Mapping[str, AnnotationFolder | AnnotationTable]
    pixel_sizes: Callable[[], dict[str, float]]
    pixel_size_source: str

    def annotators(self, annotator: str, where: Path) -> tuple[str, ...]:
        """The sources ``annotator`` (senior, junior or mean) averages, for ``where``."""
        if annotator == "mean":
            return tuple(self.annotations)
        if annotator not in self.annotations:
            raise DataError(
                f"{where}: annotator {annotator!r}: this dataset has one annotation per image "
                "(use annotator mean)"
            )
        return (annotator,)


@dataclass(frozen=True)
class DeclaredSplit:
    """One split of a format that lists a split per file and declares its landmark names
    there (COCO, CSV): the names, the images sorted by id, their landmarks and pixel sizes."""

    names: tuple[str, ...]
    images: list[tuple[str, Path]]
    marks: dict[str, Landmarks]
    pixel_sizes: dict[str, float]

    def index(self, path: Path, names: tuple[str, ...], mismatch: str, sizes: str) -> SplitIndex:
        """The split of the file at ``path``, whose names must be ``names`` (the train split's;
        ``mismatch`` is the error otherwise); ``sizes`` says where its pixel sizes are."""
        if self.names != names:
            raise DataError(f"{path}{mismatch}")
        return SplitIndex(
            self.images,
            {ONE_ANNOTATION: AnnotationTable(path, self.marks)},
            lambda: dict(self.pixel_sizes),
            f"{path} ({sizes})",
        )


@dataclass(frozen=True)
class DatasetFormat:
    """One dataset layout: how to index a split and where its landmark names come from.

    ``landmarks(root)`` gives the names in tensor order: fixed for Aariz and ISBI, declared in
    the dataset's own files for COCO and CSV. ``page`` is the format's page in the repository.
    """

    name: str
    page: str
    layout: str  # one phrase, for a message about a folder that is not this format
    index: Callable[[Path, str], SplitIndex]
    landmarks: Callable[[Path], tuple[str, ...]]


def to_array(
    marks: Mapping[str, tuple[float, float]], symbols: Sequence[str], where: str
) -> np.ndarray:
    """(K, 2) coordinates in ``symbols`` order; absent symbols are NaN, unknown ones an error."""
    unknown = sorted(set(marks) - set(symbols))
    if unknown:
        raise DataError(f"{where}: unknown landmark symbol {unknown[0]!r}")
    return np.array([marks.get(s, (math.nan, math.nan)) for s in symbols], dtype=float)


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


def not_a_file(path: Path) -> str | None:
    """Why an image named at ``path`` cannot be read as a file (missing, a folder, a broken
    symlink or a symlink loop), or None when it is a file."""
    if path.is_file():
        return None
    if path.is_dir():
        return "a folder, not an image file"
    if path.is_symlink():
        return "a broken symlink or a symlink loop, not an image file"
    return "missing"


def list_images(folder: Path) -> list[tuple[str, Path]]:
    """(id, path) of every image in ``folder`` sorted by id. None, a name with an image suffix
    that is no file (a broken symlink, a symlink loop, a folder), and two images of one id
    (``X.png`` and ``X.jpg``: which one would the annotation be of?) are a ``DataError``."""
    named = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in named:
        if (why := not_a_file(path)) is not None:
            raise DataError(f"{path}: {why}")
    seen: dict[str, Path] = {}
    for path in named:
        if path.stem in seen:
            raise DataError(
                f"{seen[path.stem]} and {path.name}: two images of id "
                f"{path.stem!r}; keep one (annotations are matched by id)"
            )
        seen[path.stem] = path
    if not seen:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return sorted(seen.items())


def verify_image(path: Path) -> tuple[int, int]:
    """(width, height) as shown of an image that decodes completely, or a ``DataError``
    naming it (``inspect_image``)."""
    return inspect_image(path)[0]


def inspect_image(path: Path) -> tuple[tuple[int, int], str, int]:
    """(width, height) as shown (``letterbox.upright_size``: landmarks are read in the frame
    its EXIF orientation turns it to), the pixel kind (``letterbox.bit_depth``) and the EXIF
    orientation of an image that decodes completely, or a ``DataError`` naming it. What
    ``start`` and ``data check`` both ask.

    No check short of decoding is complete: a PNG's chunk checksums (PIL's ``verify``, 1 ms
    for a 1935 x 2400 cephalogram) pass damaged pixel data whose checksums were recomputed, and
    inflating its pixel data alone costs 23 ms against 56 ms to decode it. So a PNG is
    verified (checksums, its IEND chunk) and decoded, a JPEG decoded at 1/8 scale (its size
    and its whole entropy-coded stream, 11 ms), anything else decoded. ``load_split`` runs
    these on threads (PIL decodes without the GIL): ``benchmarks/data_pipeline.py`` measures
    what a start pays per image.
    """
    from trainables.data.letterbox import TURNED_SIDEWAYS, bit_depth, orientation

    try:
        with Image.open(path) as im:
            size, form = im.size, im.format
            if form == "PNG":
                im.verify()
        with Image.open(path) as im:
            if form == "JPEG":
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
            kind, turn = bit_depth(im), orientation(im)
    except (OSError, SyntaxError, ValueError, struct.error, Image.DecompressionBombError) as e:
        reason = "no image format PIL knows" if isinstance(e, UnidentifiedImageError) else e
        raise DataError(f"{path}: unreadable image ({reason})") from None
    return (size[::-1] if turn in TURNED_SIDEWAYS else size), kind, turn


def check_inside(
    xy: np.ndarray, size: tuple[int, int], symbols: Sequence[str], where: str, image: Path
) -> None:
    """Every annotated landmark (read from ``where``) lies on its ``image`` (missing: NaN)."""
    width, height = size
    for symbol, (x, y) in zip(symbols, xy, strict=True):
        if math.isnan(x) or math.isnan(y):
            continue
        if not (0 <= x < width and 0 <= y < height):
            raise DataError(
                f"{where}: landmark {symbol!r} must lie inside the {width}x{height} image "
                f"{image.name}, got ({x:g}, {y:g})"
            )
