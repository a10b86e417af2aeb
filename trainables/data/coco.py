"""COCO keypoints: one JSON file per split, the convention MMPose reads (and the CL-Detection
2023 baseline writes), with each image's pixel spacing and the landmark names in the file.

The layout, the fields and their units, with an example: ``trainables/data/coco.md``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from trainables.data.letterbox import upright_size
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

ANNOTATIONS = "annotations"  # ROOT/annotations/<split>.json
IMAGES = "images"  # file_name is relative to ROOT/images/
NAMES_FROM = "train"  # the split whose file declares the landmark names every split shares


def split_file(root: Path, split: str) -> Path:
    return root / ANNOTATIONS / f"{split}.json"


def landmarks(root: Path | None) -> tuple[str, ...]:
    """The names the train split's file declares (its category's ``keypoints``), in order."""
    if root is None:
        raise DataError("a COCO dataset declares its landmarks: the dataset folder is needed")
    return parse(split_file(root, NAMES_FROM), root).names


def index(root: Path, split: str) -> SplitIndex:
    """The images of ``split`` from ``annotations/<split>.json``, which must declare the same
    landmarks as the train split's file."""
    path, names = split_file(root, split), landmarks(root)
    mismatch = (
        f": categories[0].keypoints must be the {len(names)} names of "
        f"{split_file(root, NAMES_FROM)}, in its order"
    )
    return parse(path, root).index(path, names, mismatch, "images[].spacing")


_PARSED: dict[tuple[Path, int, int], DeclaredSplit] = {}  # by (path, mtime, size): parsed once


def parse(path: Path, root: Path) -> DeclaredSplit:
    """The split file at ``path``, checked; every problem is a ``DataError`` naming the key."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: COCO keypoints file missing") from None
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _PARSED:
        _PARSED.clear()  # one dataset at a time: keep the memory of one
        _PARSED[key] = _parse(path, _load(path), root / IMAGES)
    return _PARSED[key]


def _load(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a COCO keypoints file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON (line {e.lineno}: {e.msg})") from None
    except (UnicodeDecodeError, OSError) as e:
        raise DataError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: must be a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise DataError(f"{path}: {key} must be a list")
    return doc


def _parse(path: Path, doc: dict[str, Any], folder: Path) -> DeclaredSplit:
    names = _names(path, doc["categories"])
    images: dict[Any, tuple[str, Path]] = {}
    spacing: dict[str, float] = {}
    for i, item in enumerate(doc["images"]):
        ceph_id, image, size = _image(path, i, item, folder)
        if item["id"] in images:
            raise DataError(f"{path}: images[{i}].id {item['id']!r} appears twice")
        if ceph_id in spacing:
            raise DataError(f"{path}: images[{i}].file_name: a second image with id {ceph_id!r}")
        images[item["id"]] = (ceph_id, image)
        spacing[ceph_id] = size
    marks: dict[str, Landmarks] = {}
    for i, item in enumerate(doc["annotations"]):
        where = f"{path}: annotations[{i}]"
        if not isinstance(item, dict) or item.get("image_id") not in images:
            got = item.get("image_id") if isinstance(item, dict) else item
            raise DataError(f"{where}.image_id must be the id of an image, got {got!r}")
        ceph_id = images[item["image_id"]][0]
        if ceph_id in marks:
            raise DataError(f"{where}: a second annotation of image {ceph_id!r} (one per image)")
        marks[ceph_id] = _keypoints(where, item.get("keypoints"), names)
    return DeclaredSplit(names, sorted(images.values()), marks, spacing)


def _names(path: Path, categories: list[Any]) -> tuple[str, ...]:
    with_points = [c for c in categories if isinstance(c, dict) and "keypoints" in c]
    if len(with_points) != 1:
        raise DataError(
            f"{path}: categories must hold one category with keypoints (the landmark names), "
            f"found {len(with_points)}"
        )
    names = with_points[0]["keypoints"]
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
        raise DataError(f"{path}: categories[].keypoints must be a list of landmark names")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{path}: categories[].keypoints names {twice[0]!r} twice")
    return tuple(names)


def _image(path: Path, i: int, item: Any, folder: Path) -> tuple[str, Path, float]:
    where = f"{path}: images[{i}]"
    if not isinstance(item, dict) or not isinstance(item.get("id"), (int, str)):
        raise DataError(f"{where}.id missing (a number or a string)")
    name = item.get("file_name")
    if not isinstance(name, str) or not name:
        raise DataError(f"{where}.file_name missing (a path relative to {folder})")
    image = folder / name
    if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"{where}.file_name {name!r} is not an image ({', '.join(IMAGE_SUFFIXES)})")
    if (why := not_a_file(image)) is not None:
        raise DataError(f"{where}.file_name: {image}: {why}")
    return Path(name).stem, image, _spacing(where, item.get("spacing"))


def _spacing(where: str, value: Any) -> float:
    """mm per pixel: a number, or [row, column] spacing as DICOM writes it (equal)."""
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(
            f"{where}.spacing must be the pixel size in mm (a number; never assumed), got {value!r}"
        )
    if not (math.isfinite(value) and value > 0):
        raise DataError(f"{where}.spacing must be > 0 mm, got {value!r}")
    return float(value)


def _keypoints(where: str, points: Any, names: tuple[str, ...]) -> Landmarks:
    """Flat [x, y, v] per name; v = 0 is a landmark not annotated."""
    if not isinstance(points, list) or len(points) != 3 * len(names):
        got = len(points) if isinstance(points, list) else type(points).__name__
        raise DataError(
            f"{where}.keypoints must be [x, y, v] for each of {len(names)} names, got {got}"
        )
    marks: Landmarks = {}
    for k, name in enumerate(names):
        x, y, v = points[3 * k : 3 * k + 3]
        if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in (x, y, v)):
            raise DataError(f"{where}.keypoints ({name}) must be numbers, got {[x, y, v]!r}")
        if v == 0:
            continue
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DataError(f"{where}.keypoints ({name}) must be finite pixels, got {[x, y]!r}")
        marks[name] = (float(x), float(y))
    return marks


FORMAT = DatasetFormat(
    name="coco",
    page="trainables/data/coco.md",
    layout="annotations/train.json, valid.json, test.json and images/",
    index=index,
    landmarks=landmarks,
)


def write_split(root: Path, split: str, records: Sequence[Record], names: Sequence[str]) -> Path:
    """Write ``records`` (images copied to ``images/<split>/``) as ``annotations/<split>.json``;
    a NaN landmark is written as not annotated (v = 0)."""
    folder = root / IMAGES / split
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for number, record in enumerate(records, start=1):
        shutil.copy2(record.image, folder / record.image.name)
        with Image.open(record.image) as im:
            width, height = upright_size(im)  # the frame the landmarks are in
        images.append(
            {
                "id": number,
                "file_name": f"{split}/{record.image.name}",
                "width": width,
                "height": height,
                "spacing": record.pixel_size,
            }
        )
        points = []
        for x, y in record.landmarks:
            labelled = not (math.isnan(x) or math.isnan(y))
            points += [round(float(x), 3), round(float(y), 3), 2] if labelled else [0, 0, 0]
        annotations.append(
            {"id": number, "image_id": number, "category_id": 1, "keypoints": points,
             "num_keypoints": sum(1 for v in points[2::3] if v)}
        )  # fmt: skip
    path = split_file(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    category = {"id": 1, "name": "cephalogram", "keypoints": list(names), "skeleton": []}
    doc = {"images": images, "annotations": annotations, "categories": [category]}
    path.write_text(json.dumps(doc, indent=1))
    return path
