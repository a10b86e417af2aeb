"""``search.py predict``: landmarks for new images with a registered model, written as one
Aariz/CEPHA29 JSON per image in original pixels (and an overlay PNG with ``--overlay``).

The model comes from the MLflow registry (``search.app.registry``); inference is the trainable's
own (``trainables.eval.inference``), on the GPU when this process has one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from search.app.registry import load_registered
from search.records.tracking import Tracking
from trainables.artifacts import ModelMetadata
from trainables.data.records import IMAGE_SUFFIXES
from trainables.errors import ConfigError, DataError
from trainables.eval.inference import predict_images
from trainables.eval.overlay import draw_overlay
from trainables.eval.predictions import write_prediction
from trainables.eval.tta import TTA
from trainables.precision import Precision


def collect_images(inputs: Sequence[Path]) -> list[Path]:
    """Image files named by ``inputs``: files as given, folders' images sorted by name.

    A missing path, a folder without images, a file that is not an image, or two images that
    would write the same ``<stem>.json`` are a ``DataError``.
    """
    found: list[Path] = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            images = sorted(
                p for p in entry.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not images:
                raise DataError(f"{entry}: no images ({', '.join(IMAGE_SUFFIXES)}) in folder")
            found.extend(images)
        elif entry.is_file():
            if entry.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{entry}: not an image (expected {', '.join(IMAGE_SUFFIXES)})")
            found.append(entry)
        else:
            raise DataError(f"{entry}: no such file or folder")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)  # a file named twice counts once
    by_stem: dict[str, Path] = {}
    for path in unique.values():
        if path.stem in by_stem:
            raise DataError(f"{path} and {by_stem[path.stem]}: both would write {path.stem}.json")
        by_stem[path.stem] = path
    return list(unique.values())


def tta_for(meta: ModelMetadata, enabled: bool) -> TTA | None:
    """The test-time augmentation for a registered model: mirrored only if it was trained with
    ``aug_flip`` (its config in the metadata says)."""
    if not enabled:
        return None
    return TTA(flip=meta.aug_flip)


def predict(
    tracking: Tracking,
    uri: str,
    inputs: list[Path],
    out_dir: Path,
    pixel_size: float | None = None,
    overlay: bool = False,
    tta: bool = False,
) -> list[Path]:
    """Write ``out_dir/<stem>.json`` per image (and ``<stem>.png`` with ``overlay``).

    The JSON is the Aariz/CEPHA29 prediction format in original pixels; ``pixel_size`` (mm per
    pixel) is recorded as ``pixel_size_mm`` only when given, never assumed. Returns the files
    written, JSON first per image. ``tta``: test-time augmentation (``trainables.eval.tta``),
    mirrored too when the model was trained with ``aug_flip``.
    """
    if pixel_size is not None and not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ConfigError(f"pixel size must be a positive number of mm, got {pixel_size}")
    paths = collect_images(inputs)
    model, meta = load_registered(tracking, uri)
    symbols = meta.symbols
    # Every image is decoded and predicted before anything is written: a bad one leaves no
    # half-filled output folder behind.
    preds = predict_images(
        model,
        paths,
        meta.image_size,
        Precision.for_inference(meta.precision),
        stride=meta.stride,
        tta=tta_for(meta, tta),
    )
    if preds.shape[1] != len(symbols):
        raise ConfigError(
            f"model {uri!r} outputs {preds.shape[1]} landmarks "
            f"but its metadata lists {len(symbols)} symbols"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for path, xy in zip(paths, preds, strict=True):
        target = out_dir / f"{path.stem}.json"
        write_prediction(target, path.stem, xy, symbols)
        if pixel_size is not None:
            doc = json.loads(target.read_text())
            doc["pixel_size_mm"] = pixel_size
            target.write_text(json.dumps(doc, indent=1))
        written.append(target)
        if overlay:
            written.append(
                draw_overlay(path, xy, symbols, out_dir / f"{path.stem}.png", title=path.name)
            )
    return written
