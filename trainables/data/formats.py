"""Dataset splits as records, by format name; torch-free, so the driver can check data cheaply.

``load_split`` and ``symbols`` look the format up in ``FORMATS`` (``aariz``, ``isbi``, ``coco``,
``csv``); each format's page (``trainables/data/<name>.md``) describes its layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables.data import aariz, coco, csv_table, isbi
from trainables.data.records import (
    ANNOTATOR_CHOICES,
    DatasetFormat,
    Record,
    check_inside,
    to_array,
    verify_image,
)
from trainables.errors import ConfigError, DataError

__all__ = ["FORMATS", "Record", "get_format", "load_split", "symbols"]

FORMATS: dict[str, DatasetFormat] = {
    f.name: f for f in (aariz.FORMAT, isbi.FORMAT, coco.FORMAT, csv_table.FORMAT)
}


def get_format(fmt: str) -> DatasetFormat:
    """The reader registered as ``fmt``; an unknown name is a ``ConfigError``."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ConfigError(
            f"unknown dataset format {fmt!r}; known: {', '.join(sorted(FORMATS))}"
        ) from None


def detect(root: Path) -> str:
    """The format whose train split is at ``root`` (what ``--format auto`` reads)."""
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder missing")
    for name, reader in FORMATS.items():
        try:
            reader.index(root, "train")
        except DataError:
            continue
        return name
    layouts = "; ".join(f"{name}: {f.layout}" for name, f in FORMATS.items())
    raise DataError(f"{root}: not a dataset cephtune reads: expected one of ({layouts})")


def symbols(fmt: str, root: Path | str | None = None) -> tuple[str, ...]:
    """Landmark symbols in tensor order: fixed for Aariz (29) and ISBI (19); COCO and CSV
    datasets declare theirs, so those need the dataset's ``root``."""
    return get_format(fmt).landmarks(Path(root) if root else None)


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
    names = reader.landmarks(root)
    sizes = index.pixel_sizes()
    sources = [index.annotations[w] for w in index.annotators(annotator, root)]
    for source in sources:
        source.check()
    records = []
    for ceph_id, image in index.images:
        if ceph_id not in sizes:
            raise DataError(
                f"{image}: no pixel size for id {ceph_id!r} in {index.pixel_size_source}"
            )
        shape = verify_image(image) if verify else None
        marks = []
        for source in sources:
            where, found = source.read(ceph_id)
            xy = to_array(found, names, where)
            if shape is not None:
                check_inside(xy, shape, names, where, image)
            marks.append(xy)
        records.append(Record(ceph_id, image, np.mean(marks, axis=0), sizes[ceph_id]))
    return records
