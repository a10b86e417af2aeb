"""The ISBI 2015 cephalometric challenge layout: BMP images, 19 "x,y" lines per annotation.

The layout, the landmark order and the spacing: ``trainables/data/isbi.md``.
"""

from __future__ import annotations

import math
from pathlib import Path

from trainables.data.landmarks import ISBI_SYMBOLS
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

SPLIT_DIRS = {"train": "TrainingData", "valid": "Test1Data", "test": "Test2Data"}
ANNOTATOR_DIRS = {"senior": "400_senior", "junior": "400_junior"}
# The dataset's published spacing (Wang et al. 2016: every image is 1935 x 2400 px at
# 0.1 mm/px, one device). It is a property of ISBI 2015, not a fallback for a missing value.
PIXEL_SIZE_MM = 0.1


def index(root: Path, split: str) -> SplitIndex:
    """Images of ``split`` (train = TrainingData, valid = Test1Data, test = Test2Data)."""
    if split not in SPLIT_DIRS:
        raise DataError(f"{root}: ISBI 2015 has no split {split!r}; known: {', '.join(SPLIT_DIRS)}")
    images = list_images(require_dir(require_dir(root, "RawImage"), SPLIT_DIRS[split]))
    ann = find_dir(root, "AnnotationsByMD")
    return SplitIndex(
        images,
        {
            who: AnnotationFolder(find_dir(ann, name), ".txt", read_annotation)
            for who, name in ANNOTATOR_DIRS.items()
        },
        lambda: dict.fromkeys((ceph_id for ceph_id, _ in images), PIXEL_SIZE_MM),
        "the published 0.1 mm spacing",
    )


def read_annotation(path: Path) -> Landmarks:
    """The first 19 lines as landmarks in file order; later lines hold other labels."""
    try:
        lines = read_annotation_text(path).splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text file ({e})") from None
    if len(lines) < len(ISBI_SYMBOLS):
        raise DataError(
            f"{path}:{len(lines) + 1}: expected {len(ISBI_SYMBOLS)} landmark lines 'x,y', "
            f"the file ends after {len(lines)}"
        )
    marks: Landmarks = {}
    for number, (symbol, line) in enumerate(zip(ISBI_SYMBOLS, lines, strict=False), start=1):
        parts = line.split(",")
        try:
            x, y = (float(v) for v in parts) if len(parts) == 2 else (math.nan, math.nan)
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError
        except ValueError:
            raise DataError(f"{path}:{number}: expected 'x,y' in pixels, got {line!r}") from None
        marks[symbol] = (x, y)
    return marks


FORMAT = DatasetFormat(
    name="isbi",
    page="trainables/data/isbi.md",
    layout="RawImage/ and AnnotationsByMD/",
    index=index,
    landmarks=lambda root: ISBI_SYMBOLS,
)
