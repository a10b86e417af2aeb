"""Deterministic synthetic cephalogram datasets written in the Aariz layout.

Each image has its own RNG seeded by (seed, index), so the output is byte-identical for the same
arguments. Images come from ``trainables.data.anatomy``; senior and junior annotations add small
independent noise to the true positions; each image gets a fictitious device and pixel size.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from trainables.data.anatomy import FIELD_MM, load_mean_shape, render, sample_shape
from trainables.data.landmarks import AARIZ_SYMBOLS, AARIZ_TITLES
from trainables.data.records import check_new_folder
from trainables.errors import ConfigError

GENERATOR_VERSION = 1
SPLIT_FRACTIONS = {"valid": 0.15, "test": 0.15}  # Aariz: 700 / 150 / 150
# Fictitious devices with the spread of Aariz's real pixel sizes around the base spacing.
MACHINES = (("synthetic-A", 0.95), ("synthetic-B", 1.0), ("synthetic-C", 1.05))
ANNOTATOR_NOISE_MM = {"senior": 0.35, "junior": 0.7}


@dataclass(frozen=True)
class SynthSpec:
    """What to generate: image count, image size in pixels and the seed."""

    n: int = 100
    width: int = 1935
    height: int = 2400
    seed: int = 0

    def validate(self) -> None:
        if self.n < 3:
            raise ConfigError(
                f"synthetic dataset: n must be >= 3 (one image per split), got {self.n}"
            )
        if self.width < 32 or self.height < 32:
            raise ConfigError(
                "synthetic dataset: size must be at least 32 x 32 px, "
                f"got {self.width} x {self.height}"
            )

    def key(self) -> str:
        return f"v{GENERATOR_VERSION}-n{self.n}-{self.width}x{self.height}-s{self.seed}"

    @classmethod
    def from_key(cls, key: str) -> SynthSpec:
        """The spec ``key()`` names; a key of another generator version is an error."""
        found = KEY_RE.match(key)
        if found is None or int(found["version"]) != GENERATOR_VERSION:
            raise ConfigError(
                f"synthetic dataset key {key!r} is not one of generator version "
                f"{GENERATOR_VERSION} (v{GENERATOR_VERSION}-nN-WxH-sSEED)"
            )
        return cls(*(int(found[k]) for k in ("n", "width", "height", "seed")))


KEY_RE = re.compile(
    r"^v(?P<version>\d+)-n(?P<n>\d+)-(?P<width>\d+)x(?P<height>\d+)-s(?P<seed>\d+)$"
)


def ensure_dataset(spec: SynthSpec, root: Path) -> Path:
    """``root`` holding the dataset of ``spec``: generated unless it exists. Safe when several
    processes (the driver, trials after the cache folder was deleted) race to write it."""
    root = Path(root)
    if root.is_dir():
        return root
    try:
        write_dataset(spec, root)
    except (OSError, ConfigError):
        if not root.is_dir():  # not another process's atomic rename winning the race
            raise
    return root


def split_sizes(n: int) -> dict[str, int]:
    valid = max(1, round(n * SPLIT_FRACTIONS["valid"]))
    test = max(1, round(n * SPLIT_FRACTIONS["test"]))
    return {"train": n - valid - test, "valid": valid, "test": test}


def _annotation(ceph_id: str, split: str, px: np.ndarray, w: int, h: int) -> dict:
    xy = np.clip(np.round(px), 0, [w - 1, h - 1]).astype(int)
    return {
        "ceph_id": ceph_id,
        "landmarks": [
            {
                "landmark_id": f"{i + 1}",
                "title": AARIZ_TITLES[s],
                "symbol": s,
                "value": {"x": int(xy[i, 0]), "y": int(xy[i, 1])},
            }
            for i, s in enumerate(AARIZ_SYMBOLS)
        ],
        "dataset_name": "cephtune-synthetic",
        "dataset_split": split,
    }


def write_dataset(spec: SynthSpec, out_dir: Path) -> Path:
    """Write a synthetic Aariz-layout dataset to ``out_dir`` (atomically) and return it."""
    spec.validate()
    out_dir = Path(out_dir)
    check_new_folder(out_dir, "data synth", empty_ok=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _write_into(spec, tmp)
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_into(spec: SynthSpec, root: Path) -> None:
    mean = load_mean_shape()
    base = max(FIELD_MM[0] / spec.width, FIELD_MM[1] / spec.height)
    rows = []
    index = 0
    for split, count in split_sizes(spec.n).items():
        images = root / split / "Cephalograms"
        ann = root / split / "Annotations" / "Cephalometric Landmarks"
        for d in (images, ann / "Senior Orthodontists", ann / "Junior Orthodontists"):
            d.mkdir(parents=True)
        for _ in range(count):
            rng = np.random.default_rng([spec.seed, index])
            ceph_id = f"synth{index:05d}"
            machine, factor = MACHINES[int(rng.integers(len(MACHINES)))]
            mm_per_px = base * factor
            pts = sample_shape(mean, rng)
            pixels = render(pts, spec.width, spec.height, mm_per_px, rng)
            Image.fromarray(pixels).save(images / f"{ceph_id}.png", optimize=False)
            field = np.array([spec.width, spec.height]) * mm_per_px
            origin = (np.array(FIELD_MM) - field) / 2
            true_px = (pts - origin) / mm_per_px
            for who, noise in ANNOTATOR_NOISE_MM.items():
                noisy = true_px + rng.normal(0.0, noise / mm_per_px, size=true_px.shape)
                doc = _annotation(ceph_id, split, noisy, spec.width, spec.height)
                folder = ann / f"{who.capitalize()} Orthodontists"
                (folder / f"{ceph_id}.json").write_text(json.dumps(doc))
            rows.append((ceph_id, machine, f"{mm_per_px:.6f}", "png", "L"))
            index += 1
    with open(root / "cephalogram_machine_mappings.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cephalogram_id", "machine", "pixel_size", "image_format", "mode"])
        writer.writerows(rows)
    (root / "Readme.txt").write_text(
        f"cephtune synthetic cephalograms ({spec.key()}); Aariz layout, 29 landmarks.\n"
    )
