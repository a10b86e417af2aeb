"""Aariz-layout datasets: index the files, read annotations and pixel sizes, letterbox images.

The synthetic generator writes this same layout, so one code path serves both.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from trainables.errors import DataError
from trainables.landmarks import AARIZ_SYMBOLS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
ANNOTATORS = {"senior": "Senior Orthodontists", "junior": "Junior Orthodontists"}
CSV_NAME = "cephalogram_machine_mappings.csv"


@dataclass(frozen=True)
class Record:
    """One annotated image: landmarks (K, 2) in original pixels (NaN = missing), mm per pixel."""

    ceph_id: str
    image: Path
    landmarks: np.ndarray
    pixel_size: float


def _child(parent: Path, name: str) -> Path:
    """``parent/name``, case-insensitive: Aariz ships lower case, its loader capitalises."""
    exact = parent / name
    if exact.is_dir():
        return exact
    if parent.is_dir():
        for p in parent.iterdir():
            if p.is_dir() and p.name.lower() == name.lower():
                return p
    raise DataError(f"{exact}: folder missing")


def read_pixel_sizes(root: Path) -> dict[str, float]:
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


def read_landmarks(path: Path) -> np.ndarray:
    """(K, 2) pixel coordinates by symbol from one Aariz JSON; absent symbols are NaN."""
    try:
        doc = json.loads(path.read_text())
        items = doc["landmarks"]
        by_symbol = {
            item["symbol"]: (float(item["value"]["x"]), float(item["value"]["y"])) for item in items
        }
    except FileNotFoundError:
        raise DataError(f"{path}: annotation missing") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: malformed landmark JSON ({type(e).__name__}: {e})") from None
    unknown = sorted(set(by_symbol) - set(AARIZ_SYMBOLS))
    if unknown:
        raise DataError(f"{path}: unknown landmark symbol {unknown[0]!r}")
    return np.array([by_symbol.get(s, (math.nan, math.nan)) for s in AARIZ_SYMBOLS])


def load_split(root: Path | str, split: str, annotator: str) -> list[Record]:
    """Index one split of an Aariz-layout dataset; ground truth per ``annotator``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder missing")
    sizes = read_pixel_sizes(root)
    folder = _child(root, split)
    images = sorted(
        p for p in _child(folder, "Cephalograms").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise DataError(f"{folder}: no images in Cephalograms/")
    ann = _child(_child(folder, "Annotations"), "Cephalometric Landmarks")
    who = list(ANNOTATORS) if annotator == "mean" else [annotator]
    records = []
    for image in images:
        ceph_id = image.stem
        if ceph_id not in sizes:
            raise DataError(f"{root / CSV_NAME}: no pixel_size for cephalogram_id {ceph_id!r}")
        marks = [read_landmarks(_child(ann, ANNOTATORS[w]) / f"{ceph_id}.json") for w in who]
        records.append(Record(ceph_id, image, np.mean(marks, axis=0), sizes[ceph_id]))
    return records


@dataclass(frozen=True)
class Letterbox:
    """Aspect-preserving resize into a square, padded centred. Maps points both ways."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int

    @classmethod
    def fit(cls, width: int, height: int, size: int) -> Letterbox:
        s = size / max(width, height)
        new_w, new_h = max(1, round(width * s)), max(1, round(height * s))
        return cls(new_w / width, new_h / height, (size - new_w) // 2, (size - new_h) // 2)

    def forward(self, xy: np.ndarray) -> np.ndarray:
        out = np.array(xy, dtype=np.float64)
        out[..., 0] = (out[..., 0] + 0.5) * self.scale_x - 0.5 + self.pad_x
        out[..., 1] = (out[..., 1] + 0.5) * self.scale_y - 0.5 + self.pad_y
        return out

    def inverse(self, xy: np.ndarray) -> np.ndarray:
        out = np.array(xy, dtype=np.float64)
        out[..., 0] = (out[..., 0] - self.pad_x + 0.5) / self.scale_x - 0.5
        out[..., 1] = (out[..., 1] - self.pad_y + 0.5) / self.scale_y - 0.5
        return out


def load_image(path: Path, size: int) -> tuple[np.ndarray, Letterbox]:
    """Decode to greyscale and letterbox into ``size`` x ``size`` uint8."""
    try:
        with Image.open(path) as im:
            im = im.convert("L")
            box = Letterbox.fit(im.width, im.height, size)
            new_w = round(im.width * box.scale_x)
            new_h = round(im.height * box.scale_y)
            small = im.resize((new_w, new_h), Image.BILINEAR, reducing_gap=3.0)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None
    canvas = np.zeros((size, size), dtype=np.uint8)
    canvas[box.pad_y : box.pad_y + new_h, box.pad_x : box.pad_x + new_w] = np.asarray(small)
    return canvas, box


class LandmarkDataset(torch.utils.data.Dataset):
    """Letterboxed images decoded once into memory with their landmarks in input pixels."""

    def __init__(self, records: list[Record], image_size: int) -> None:
        self.records = records
        loaded = [load_image(r.image, image_size) for r in records]
        self.images = np.stack([img for img, _ in loaded])
        self.boxes = [box for _, box in loaded]
        self.coords = np.stack(
            [box.forward(r.landmarks) for r, (_, box) in zip(records, loaded, strict=True)]
        )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image = torch.from_numpy(self.images[i]).float().div_(255.0).unsqueeze(0)
        return image, torch.from_numpy(self.coords[i]).float(), i

    def to_original(self, i: int, xy: np.ndarray) -> np.ndarray:
        return self.boxes[i].inverse(xy)
