"""Dataset splits as records, by format name; torch-free, so the driver can check data cheaply.

``load_split`` and ``symbols`` look the format up in ``FORMATS`` (``aariz``, ``isbi``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables.data import aariz, isbi
from trainables.data.records import (
    ANNOTATOR_CHOICES,
    ANNOTATORS,
    DatasetFormat,
    Record,
    check_inside,
    verify_image,
)
from trainables.errors import ConfigError, DataError

__all__ = ["FORMATS", "Record", "get_format", "load_split", "symbols"]

FORMATS: dict[str, DatasetFormat] = {f.name: f for f in (aariz.FORMAT, isbi.FORMAT)}


def get_format(fmt: str) -> DatasetFormat:
    """The reader registered as ``fmt``; an unknown name is a ``ConfigError``."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ConfigError(
            f"unknown dataset format {fmt!r}; known: {', '.join(sorted(FORMATS))}"
        ) from None


def symbols(fmt: str) -> tuple[str, ...]:
    """Landmark symbols of ``fmt`` in tensor order (Aariz 29, ISBI 19)."""
    return get_format(fmt).symbols


def load_split(
    root: Path | str, split: str, annotator: str, fmt: str = "aariz", verify: bool = False
) -> list[Record]:
    """Index one split; ground truth per ``annotator`` (senior, junior, or mean = their average).

    ``verify`` also checks that every image file is complete and that every annotated landmark
    lies on its image: what the driver does before a study, so that a broken file fails the
    start rather than a trial (``trainables.formats.verify_image`` says what it costs).
    """
    reader = get_format(fmt)
    if annotator not in ANNOTATOR_CHOICES:
        raise ConfigError(f"annotator must be senior, junior or mean, got {annotator!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder missing")
    index = reader.index(root, split)
    sizes = reader.pixel_sizes(root, [ceph_id for ceph_id, _ in index.images])
    who = ANNOTATORS if annotator == "mean" else (annotator,)
    folders = [index.annotation_dir(w) for w in who]
    records = []
    for ceph_id, image in index.images:
        if ceph_id not in sizes:
            raise DataError(
                f"{image}: no pixel size for id {ceph_id!r} in {reader.pixel_size_source}"
            )
        shape = verify_image(image) if verify else None
        marks = []
        for folder in folders:
            path = reader.annotation_file(folder, ceph_id)
            xy = reader.to_array(reader.read_annotation(path), path)
            if shape is not None:
                check_inside(xy, shape, reader.symbols, path, image)
            marks.append(xy)
        records.append(Record(ceph_id, image, np.mean(marks, axis=0), sizes[ceph_id]))
    return records
