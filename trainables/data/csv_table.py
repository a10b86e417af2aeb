"""A plain CSV per split: one row per image with its file, its pixel size and ``x,y`` per landmark,
the landmark names declared by the header.

The layout, the columns and their units, with an example: ``trainables/data/csv.md``.
"""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

from trainables.data.records import (
    IMAGE_SUFFIXES,
    DatasetFormat,
    DeclaredSplit,
    Landmarks,
    Record,
    SplitIndex,
    not_a_file,
)
from trainables.errors import DataError

IMAGES = "images"  # the file column is relative to ROOT/images/
FILE, PIXEL_SIZE = "file", "pixel_size"  # the first two columns; then NAME_x, NAME_y per landmark
NAMES_FROM = "train"  # the split whose header declares the landmark names every split shares


def split_file(root: Path, split: str) -> Path:
    return root / f"{split}.csv"


def landmarks(root: Path | None) -> tuple[str, ...]:
    """The names the train split's header declares, in column order."""
    if root is None:
        raise DataError("a CSV dataset declares its landmarks: the dataset folder is needed")
    return parse(split_file(root, NAMES_FROM), root).names


def index(root: Path, split: str) -> SplitIndex:
    """The images of ``split`` from ``<split>.csv``, whose header must name the train split's
    landmarks in its order."""
    path = split_file(root, split)
    mismatch = (
        f":1: the landmark columns must be those of {split_file(root, NAMES_FROM)}, in its order"
    )
    return parse(path, root).index(path, landmarks(root), mismatch, f"column {PIXEL_SIZE}")


_PARSED: dict[tuple[Path, int, int], DeclaredSplit] = {}


def parse(path: Path, root: Path) -> DeclaredSplit:
    """The table at ``path``, checked; every problem is a ``DataError`` naming line and column."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: landmark CSV missing") from None
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _PARSED:
        if path.is_dir():
            raise DataError(f"{path}: a folder, not a landmark CSV")
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet may add a BOM
                rows = list(csv.reader(f))
        except (UnicodeDecodeError, csv.Error, OSError) as e:
            raise DataError(f"{path}: not a readable CSV ({e})") from None
        _PARSED.clear()
        _PARSED[key] = _parse(path, rows, root / IMAGES)
    return _PARSED[key]


def _names(path: Path, header: list[str]) -> tuple[str, ...]:
    expected = f"{FILE},{PIXEL_SIZE},NAME_x,NAME_y,… (one pair per landmark)"
    if header[:2] != [FILE, PIXEL_SIZE] or len(header) < 4 or len(header) % 2:
        raise DataError(f"{path}:1: the header must be {expected}, got {','.join(header)!r}")
    names = []
    for col in range(2, len(header), 2):
        x, y = header[col], header[col + 1]
        if not (x.endswith("_x") and y == f"{x[:-2]}_y" and len(x) > 2):
            raise DataError(
                f"{path}:1: columns {col + 1}-{col + 2} must be NAME_x,NAME_y, got {x!r},{y!r}"
            )
        names.append(x[:-2])
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{path}:1: landmark {twice[0]!r} has two column pairs")
    return tuple(names)


def _parse(path: Path, rows: list[list[str]], folder: Path) -> DeclaredSplit:
    if not rows:
        raise DataError(f"{path}: empty (a header, then one row per image)")
    names = _names(path, [c.strip() for c in rows[0]])
    images: dict[str, Path] = {}
    marks: dict[str, Landmarks] = {}
    sizes: dict[str, float] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # a blank line
        if len(row) != 2 + 2 * len(names):
            raise DataError(
                f"{path}:{line}: {len(row)} columns, the header has {2 + 2 * len(names)}"
            )
        name = row[0].strip()
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(
                f"{path}:{line}: {FILE} {name!r} is not an image ({', '.join(IMAGE_SUFFIXES)})"
            )
        image = folder / name
        if (why := not_a_file(image)) is not None:
            raise DataError(f"{path}:{line}: {FILE}: {image}: {why}")
        ceph_id = Path(name).stem
        if ceph_id in images:
            raise DataError(f"{path}:{line}: a second image with id {ceph_id!r}")
        images[ceph_id] = image
        sizes[ceph_id] = _number(path, line, PIXEL_SIZE, row[1], positive=True)
        marks[ceph_id] = _marks(path, line, names, row[2:])
    return DeclaredSplit(names, sorted(images.items()), marks, sizes)


def _marks(path: Path, line: int, names: tuple[str, ...], cells: list[str]) -> Landmarks:
    """Both cells empty: a landmark not annotated; one of the two empty is an error."""
    marks: Landmarks = {}
    for k, name in enumerate(names):
        x, y = cells[2 * k].strip(), cells[2 * k + 1].strip()
        if not x and not y:
            continue
        marks[name] = (
            _number(path, line, f"{name}_x", x),
            _number(path, line, f"{name}_y", y),
        )
    return marks


def _number(path: Path, line: int, column: str, text: str, positive: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (positive and value <= 0):
        what = "the pixel size in mm, > 0 (never assumed)" if positive else "a number of pixels"
        raise DataError(f"{path}:{line}: {column} must be {what}, got {text.strip()!r}")
    return value


FORMAT = DatasetFormat(
    name="csv",
    page="trainables/data/csv.md",
    layout="train.csv, valid.csv, test.csv and images/",
    index=index,
    landmarks=landmarks,
)


def write_split(root: Path, split: str, records: Sequence[Record], names: Sequence[str]) -> Path:
    """Write ``records`` (images copied to ``images/<split>/``) as ``<split>.csv``; a NaN
    landmark is written as two empty cells."""
    folder = root / IMAGES / split
    folder.mkdir(parents=True, exist_ok=True)
    path = split_file(root, split)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow([FILE, PIXEL_SIZE, *(f"{n}_{axis}" for n in names for axis in "xy")])
        for record in records:
            shutil.copy2(record.image, folder / record.image.name)
            cells = ["" if math.isnan(v) else f"{v:.3f}" for xy in record.landmarks for v in xy]
            out.writerow([f"{split}/{record.image.name}", f"{record.pixel_size:.12g}", *cells])
    return path
