"""The Aariz layout: per-image landmark JSON by symbol, pixel sizes from the device CSV.

The synthetic generator writes this same layout, so one reader serves both. The layout, the
fields and their units: ``trainables/data/aariz.md``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from trainables.data.landmarks import AARIZ_SYMBOLS
from trainables.data.records import (
    AnnotationFolder,
    DatasetFormat,
    Landmarks,
    SplitIndex,
    find_dir,
    list_images,
    read_annotation_text,
    require_dir,
)
from trainables.errors import DataError

ANNOTATOR_DIRS = {"senior": "Senior Orthodontists", "junior": "Junior Orthodontists"}
CSV_NAME = "cephalogram_machine_mappings.csv"


def index(root: Path, split: str) -> SplitIndex:
    """Images of ``split``; folder names match case-insensitively (Train/ as well as train/)."""
    folder = require_dir(root, split)
    images = list_images(require_dir(folder, "Cephalograms"))
    ann = find_dir(find_dir(folder, "Annotations"), "Cephalometric Landmarks")
    return SplitIndex(
        images,
        {
            who: AnnotationFolder(find_dir(ann, name), ".json", read_annotation)
            for who, name in ANNOTATOR_DIRS.items()
        },
        lambda: read_pixel_sizes(root),
        CSV_NAME,
    )


def read_annotation(path: Path) -> Landmarks:
    """Symbol -> (x, y) in original pixels from one landmark JSON."""
    try:
        doc = json.loads(read_annotation_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed landmark JSON (line {e.lineno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: malformed landmark JSON (not UTF-8 text: {e.reason})") from None
    items = doc.get("landmarks") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise DataError(f"{path}: malformed landmark JSON (landmarks must be a list)")
    marks: Landmarks = {}
    for i, item in enumerate(items):
        symbol = item.get("symbol") if isinstance(item, dict) else None
        if not isinstance(symbol, str) or not symbol:
            raise DataError(f"{path}: landmarks[{i}].symbol missing (a non-empty string)")
        value = item.get("value")
        try:
            x, y = float(value["x"]), float(value["y"])
        except (TypeError, KeyError, ValueError):
            x = y = math.nan
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DataError(
                f"{path}: landmarks[{i}].value ({symbol}) must be {{x, y}} in pixels, got {value!r}"
            )
        if symbol in marks:
            raise DataError(f"{path}: landmarks[{i}].symbol {symbol!r} appears twice")
        marks[symbol] = (x, y)
    return marks


def read_pixel_sizes(root: Path) -> dict[str, float]:
    """mm per pixel by cephalogram id from the CSV; never assumed, it differs per device."""
    path = root / CSV_NAME
    if not path.is_file():
        raise DataError(f"{path}: pixel-size CSV missing (never assumed: it differs per device)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet may add a BOM
            return _parse_pixel_sizes(path, csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from None


def _parse_pixel_sizes(path: Path, reader: csv.DictReader) -> dict[str, float]:
    """Validated sizes by id: each a positive number, an id listed twice must agree."""
    sizes: dict[str, float] = {}
    if not reader.fieldnames or not {"cephalogram_id", "pixel_size"} <= set(reader.fieldnames):
        raise DataError(f"{path}: needs columns cephalogram_id and pixel_size")
    for line, row in enumerate(reader, start=2):
        try:
            value = float(row["pixel_size"])
        except (TypeError, ValueError):
            raise DataError(
                f"{path}:{line}: pixel_size is not a number: {row['pixel_size']!r}"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise DataError(f"{path}:{line}: pixel_size must be > 0, got {value}")
        ceph_id = row["cephalogram_id"]
        if ceph_id in sizes and sizes[ceph_id] != value:
            raise DataError(
                f"{path}:{line}: cephalogram_id {ceph_id!r} is listed twice with different "
                f"pixel sizes ({sizes[ceph_id]:g}, {value:g})"
            )
        sizes[ceph_id] = value
    return sizes


FORMAT = DatasetFormat(
    name="aariz",
    page="trainables/data/aariz.md",
    layout="train/, valid/, test/, each with Cephalograms/ and Annotations/",
    index=index,
    landmarks=lambda root: AARIZ_SYMBOLS,
)
