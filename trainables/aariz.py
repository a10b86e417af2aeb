"""The Aariz layout: per-image landmark JSON by symbol, pixel sizes from the device CSV.

The synthetic generator writes this same layout, so one reader serves both.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from trainables.errors import DataError
from trainables.formats import (
    DatasetFormat,
    Landmarks,
    SplitIndex,
    find_dir,
    list_images,
    require_dir,
)
from trainables.landmarks import AARIZ_SYMBOLS

ANNOTATOR_DIRS = {"senior": "Senior Orthodontists", "junior": "Junior Orthodontists"}
CSV_NAME = "cephalogram_machine_mappings.csv"


def index(root: Path, split: str) -> SplitIndex:
    """Images of ``split``; folder names match case-insensitively (Train/ as well as train/)."""
    folder = require_dir(root, split)
    images = list_images(require_dir(folder, "Cephalograms"))
    ann = find_dir(find_dir(folder, "Annotations"), "Cephalometric Landmarks")
    return SplitIndex(images, {who: find_dir(ann, name) for who, name in ANNOTATOR_DIRS.items()})


def read_annotation(path: Path) -> Landmarks:
    """Symbol -> (x, y) in original pixels from one landmark JSON."""
    try:
        items = json.loads(path.read_text())["landmarks"]
        return {
            item["symbol"]: (float(item["value"]["x"]), float(item["value"]["y"])) for item in items
        }
    except FileNotFoundError:
        raise DataError(f"{path}: annotation missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: malformed landmark JSON ({type(e).__name__}: {e})") from None


def read_pixel_sizes(root: Path, ids: Sequence[str] = ()) -> dict[str, float]:
    """mm per pixel by cephalogram id from the CSV; never assumed, it differs per device."""
    path = root / CSV_NAME
    if not path.is_file():
        raise DataError(f"{path}: pixel-size CSV missing (never assumed: it differs per device)")
    sizes: dict[str, float] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
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
            sizes[row["cephalogram_id"]] = value
    return sizes


FORMAT = DatasetFormat(
    name="aariz",
    symbols=AARIZ_SYMBOLS,
    annotation_suffix=".json",
    pixel_size_source=CSV_NAME,
    index=index,
    read_annotation=read_annotation,
    pixel_sizes=read_pixel_sizes,
)
