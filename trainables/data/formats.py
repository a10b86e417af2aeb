"""Dataset splits as records, by format name; torch-free, so the driver can check data cheaply.

``load_split`` and ``symbols`` look the format up in ``FORMATS`` (``aariz``, ``isbi``, ``coco``,
``csv``); each format's page (``trainables/data/<name>.md``) describes its layout.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from trainables.data import aariz, coco, csv_table, isbi
from trainables.data.records import (
    ANNOTATOR_CHOICES,
    SPLITS,
    DatasetFormat,
    Record,
    check_inside,
    to_array,
    verify_image,
)
from trainables.errors import ConfigError, DataError

VERIFY_THREADS = 8  # images decoded at once by a start's check

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
    failed: dict[str, str] = {}
    for name, reader in FORMATS.items():
        try:
            reader.index(root, "train")
        except DataError as e:
            failed[name] = str(e)
            continue
        return name
    # The format whose reader got furthest (its error names the deepest path) is the one the
    # folder looks like: a broken file in it is that error, not an unknown layout.
    depth = {name: _depth(root, text) for name, text in failed.items()}
    closest = max(depth, key=depth.get)
    if depth[closest] >= 2:
        raise DataError(f"{root} looks like {closest}, but {failed[closest]}")
    if root.name.lower() in SPLITS and detect_quietly(root.parent) is not None:
        raise DataError(
            f"{root}: a split folder of the {detect_quietly(root.parent)} dataset "
            f"{root.parent}; give the dataset folder (the one above it)"
        )
    layouts = "; ".join(f"{name}: {f.layout}" for name, f in FORMATS.items())
    raise DataError(f"{root}: not a dataset cephtune reads: expected one of ({layouts})")


def detect_quietly(root: Path) -> str | None:
    """``detect``, None where it refuses."""
    try:
        return detect(root)
    except DataError:
        return None


def _depth(root: Path, error: str) -> int:
    """How far below ``root`` the path an error names lies: 0 when it is not below it or not
    there (a reader that found nothing of its layout names what is missing)."""
    named = Path(error.split(": ", 1)[0])
    if not (named.exists() or named.is_symlink()):
        return 0
    try:
        return len(named.relative_to(root).parts)
    except ValueError:
        return 0


def _verified(images: list[Path]) -> dict[Path, tuple[int, int]]:
    """(width, height) of each image, each decoded completely (``verify_image``), on threads;
    the first broken one in id order is the ``DataError``."""
    workers = max(1, min(VERIFY_THREADS, len(images), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(images, pool.map(verify_image, images), strict=True))


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
    shapes = _verified([image for _, image in index.images]) if verify else {}
    for ceph_id, image in index.images:
        if ceph_id not in sizes:
            raise DataError(
                f"{image}: no pixel size for id {ceph_id!r} in {index.pixel_size_source}"
            )
        shape = shapes.get(image)
        marks = []
        for source in sources:
            where, found = source.read(ceph_id)
            xy = to_array(found, names, where)
            if shape is not None:
                check_inside(xy, shape, names, where, image)
            marks.append(xy)
        records.append(Record(ceph_id, image, np.mean(marks, axis=0), sizes[ceph_id]))
    return records
