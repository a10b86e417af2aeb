"""Scoring landmark predictions stored as files (the CEPHA29 / Aariz JSON format).

The same metric code as the trainable: radial errors in original pixels times each image's
pixel size, MRE, SDR and a per-landmark table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from trainables.data import aariz, formats
from trainables.data.records import to_array
from trainables.errors import DataError
from trainables.eval.metrics import per_landmark, radial_errors, summarize


def write_prediction(path: Path, ceph_id: str, xy: np.ndarray, symbols: tuple[str, ...]) -> None:
    """One prediction file: landmarks by symbol in original-image pixels (sub-pixel floats)."""
    doc = {
        "ceph_id": ceph_id,
        "landmarks": [
            {"symbol": s, "value": {"x": round(float(p[0]), 2), "y": round(float(p[1]), 2)}}
            for s, p in zip(symbols, xy, strict=True)
        ],
    }
    Path(path).write_text(json.dumps(doc, indent=1))


def read_prediction(path: Path, names: tuple[str, ...]) -> np.ndarray:
    """(K, 2) predicted coordinates; every landmark of the dataset must be present."""
    marks = to_array(aariz.read_annotation(path), names, str(path))
    missing = [s for s, p in zip(names, marks, strict=True) if math.isnan(p[0])]
    if missing:
        raise DataError(f"{path}: prediction lacks landmark {missing[0]!r}")
    return marks


def score_predictions(
    pred_dir: Path, root: Path, split: str, annotator: str = "mean", fmt: str = "aariz"
) -> dict[str, Any]:
    """Score ``pred_dir/<ceph_id>.json`` against the ground truth of ``split``.

    Every image of the split needs a prediction: a missing one is an error, never a zero.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction folder missing")
    records = formats.load_split(root, split, annotator, fmt)
    names = formats.symbols(fmt, root)
    preds = []
    for record in records:
        path = pred_dir / f"{record.ceph_id}.json"
        if not path.is_file():
            raise DataError(f"{path}: no prediction for image {record.ceph_id!r} of {split}")
        preds.append(read_prediction(path, names))
    truth = np.stack([r.landmarks for r in records])
    sizes = np.array([r.pixel_size for r in records])
    errors = radial_errors(np.stack(preds), truth, sizes)
    expected = {r.ceph_id for r in records}
    extra = sorted(p.stem for p in pred_dir.glob("*.json") if p.stem not in expected)
    return {
        "split": split,
        "images": len(records),
        "unmatched_predictions": len(extra),
        **summarize(errors),
        "per_landmark": per_landmark(errors, names),
    }
