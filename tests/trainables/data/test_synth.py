"""The synthetic generator: deterministic, Aariz layout, readable by the one loader."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from trainables.data.formats import load_split
from trainables.data.landmarks import AARIZ_SYMBOLS
from trainables.data.synth import SynthSpec, write_dataset
from trainables.errors import ConfigError


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_other_seed_differs(tmp_path):
    a = write_dataset(SynthSpec(n=4, width=64, height=80, seed=7), tmp_path / "a")
    b = write_dataset(SynthSpec(n=4, width=64, height=80, seed=7), tmp_path / "b")
    c = write_dataset(SynthSpec(n=4, width=64, height=80, seed=8), tmp_path / "c")
    assert files(a) == files(b)
    assert files(a) != files(c)


def test_writes_the_aariz_layout(tmp_path):
    root = write_dataset(SynthSpec(n=10, width=96, height=120, seed=0), tmp_path / "d")
    counts = {
        s: len(list((root / s / "Cephalograms").glob("*.png"))) for s in ("train", "valid", "test")
    }
    assert counts == {"train": 6, "valid": 2, "test": 2}
    with open(root / "cephalogram_machine_mappings.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and all(float(r["pixel_size"]) > 0 for r in rows)
    ann = root / "train" / "Annotations" / "Cephalometric Landmarks"
    senior = json.loads((ann / "Senior Orthodontists" / "synth00000.json").read_text())
    junior = json.loads((ann / "Junior Orthodontists" / "synth00000.json").read_text())
    assert [m["symbol"] for m in senior["landmarks"]] == list(AARIZ_SYMBOLS)
    s = np.array([[m["value"]["x"], m["value"]["y"]] for m in senior["landmarks"]])
    j = np.array([[m["value"]["x"], m["value"]["y"]] for m in junior["landmarks"]])
    assert 0 < np.abs(s - j).mean() < 5  # small inter-annotator noise, in pixels

    records = load_split(root, "train", "mean")
    assert len(records) == 6
    for r in records:
        assert np.isfinite(r.landmarks).all()
        assert (r.landmarks >= 0).all() and (r.landmarks[:, 0] < 96).all()
        assert (r.landmarks[:, 1] < 120).all()


def test_landmarks_lie_on_visible_structures(tmp_path):
    root = write_dataset(SynthSpec(n=3, width=388, height=480, seed=1), tmp_path / "d")
    from PIL import Image

    record = load_split(root, "train", "senior")[0]
    image = np.asarray(Image.open(record.image), dtype=float)
    background = np.median(image[:20, :20])
    xy = np.round(record.landmarks).astype(int)
    values = image[xy[:, 1], xy[:, 0]]
    assert (values > background + 20).mean() > 0.9


def test_refuses_to_overwrite_and_rejects_tiny_specs(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        write_dataset(SynthSpec(n=3, width=64, height=64), tmp_path / "full")
    with pytest.raises(ConfigError, match="n must be >= 3"):
        write_dataset(SynthSpec(n=2), tmp_path / "small")
    assert (tmp_path / "full" / "x").read_text() == "keep me"
