"""Dataset readers by format name, and the LandmarkDataset the training loop iterates."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainables.data.augment import AugmentConfig
from trainables.data.dataset import LandmarkDataset
from trainables.data.formats import load_split, symbols
from trainables.data.landmarks import AARIZ_SYMBOLS, ISBI_SYMBOLS
from trainables.data.letterbox import Letterbox
from trainables.data.synth import SynthSpec, write_dataset
from trainables.errors import ConfigError, DataError

ISBI_SPLITS = {"TrainingData": (1, 2), "Test1Data": (3,), "Test2Data": (4,)}


def isbi_points(n: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(n)
    return np.round(rng.uniform(5, [40, 50], size=(19, 2))) + shift


def write_isbi(root: Path) -> Path:
    """A tiny ISBI 2015 tree: 4 BMPs of 48 x 60 px, senior and junior annotations."""
    for folder, ids in ISBI_SPLITS.items():
        (root / "RawImage" / folder).mkdir(parents=True)
        for n in ids:
            pixels = np.random.default_rng(n).integers(0, 255, (60, 48), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "RawImage" / folder / f"{n:03d}.bmp")
            for who, shift in (("senior", 0.0), ("junior", 2.0)):
                ann = root / "AnnotationsByMD" / f"400_{who}"
                ann.mkdir(parents=True, exist_ok=True)
                lines = [f"{x:g},{y:g}" for x, y in isbi_points(n, shift)] + ["3", "1"]
                (ann / f"{n:03d}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return write_dataset(
        SynthSpec(n=6, width=64, height=80, seed=0), tmp_path_factory.mktemp("s") / "d"
    )


def copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copytree(src, dst))


def test_symbols_and_unknown_format():
    assert symbols("aariz") == AARIZ_SYMBOLS and len(symbols("aariz")) == 29
    assert symbols("isbi") == ISBI_SYMBOLS and len(symbols("isbi")) == 19
    with pytest.raises(
        ConfigError, match="unknown dataset format 'x'; known: aariz, coco, csv, isbi"
    ):
        symbols("x")
    with pytest.raises(ConfigError, match="unknown dataset format"):
        load_split(".", "train", "mean", fmt="x")


def test_aariz_mean_is_the_float_mean_of_both_annotators(synth):
    senior = load_split(synth, "train", "senior")
    junior = load_split(synth, "train", "junior")
    mean = load_split(synth, "train", "mean", fmt="aariz")
    assert [r.ceph_id for r in mean] == [r.ceph_id for r in senior]
    np.testing.assert_allclose(mean[0].landmarks, (senior[0].landmarks + junior[0].landmarks) / 2)
    assert mean[0].landmarks.shape == (29, 2) and mean[0].pixel_size > 0
    with pytest.raises(ConfigError, match="annotator"):
        load_split(synth, "train", "both")


def test_aariz_accepts_capitalised_folders(synth, tmp_path):
    root = copy_tree(synth, tmp_path / "d")
    (root / "train").rename(root / "Train")
    (root / "Train" / "Cephalograms").rename(root / "Train" / "CEPHALOGRAMS")
    assert len(load_split(root, "train", "mean")) == len(load_split(synth, "train", "mean"))


def edit_csv(root: Path, change) -> None:
    path = root / "cephalogram_machine_mappings.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows = change(rows)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["cephalogram_id", "machine", "pixel_size"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in writer.fieldnames} for r in rows)


def test_aariz_pixel_size_faults_are_errors(synth, tmp_path):
    root = copy_tree(synth, tmp_path / "d")
    edit_csv(root, lambda rows: rows[1:])
    with pytest.raises(DataError, match="no pixel size for id 'synth00000'"):
        load_split(root, "train", "mean")
    edit_csv(root, lambda rows: [{**r, "pixel_size": "0"} for r in rows])
    with pytest.raises(DataError, match="pixel_size must be > 0"):
        load_split(root, "valid", "mean")
    (root / "cephalogram_machine_mappings.csv").unlink()
    with pytest.raises(DataError, match="pixel-size CSV missing"):
        load_split(root, "train", "mean")


def test_aariz_annotation_faults_name_the_file(synth, tmp_path):
    root = copy_tree(synth, tmp_path / "d")
    ann = root / "train" / "Annotations" / "Cephalometric Landmarks" / "Senior Orthodontists"
    path = ann / "synth00000.json"
    doc = json.loads(path.read_text())
    doc["landmarks"][0]["symbol"] = "XX"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="unknown landmark symbol 'XX'"):
        load_split(root, "train", "senior")
    assert len(load_split(root, "train", "junior")) == 4  # the other annotator still loads
    path.write_text("{not json")
    with pytest.raises(DataError, match=r"synth00000\.json: malformed landmark JSON"):
        load_split(root, "train", "mean")


def test_aariz_missing_symbol_is_nan(synth, tmp_path):
    root = copy_tree(synth, tmp_path / "d")
    ann = root / "train" / "Annotations" / "Cephalometric Landmarks" / "Junior Orthodontists"
    doc = json.loads((ann / "synth00000.json").read_text())
    doc["landmarks"] = [m for m in doc["landmarks"] if m["symbol"] != "Go"]
    (ann / "synth00000.json").write_text(json.dumps(doc))
    marks = load_split(root, "train", "mean")[0].landmarks
    go = AARIZ_SYMBOLS.index("Go")
    assert np.isnan(marks[go]).all() and np.isfinite(np.delete(marks, go, axis=0)).all()


def test_isbi_reads_19_landmarks_per_split(tmp_path):
    root = write_isbi(tmp_path / "isbi")
    train = load_split(root, "train", "senior", fmt="isbi")
    assert [r.ceph_id for r in train] == ["001", "002"]
    assert [r.ceph_id for r in load_split(root, "valid", "mean", fmt="isbi")] == ["003"]
    assert [r.ceph_id for r in load_split(root, "test", "mean", fmt="isbi")] == ["004"]
    assert train[0].landmarks.shape == (19, 2) and train[0].pixel_size == 0.1
    np.testing.assert_array_equal(train[0].landmarks, isbi_points(1))
    mean = load_split(root, "train", "mean", fmt="isbi")
    np.testing.assert_allclose(mean[0].landmarks, isbi_points(1) + 1.0)


def test_isbi_short_or_malformed_file_names_file_and_line(tmp_path):
    root = write_isbi(tmp_path / "isbi")
    path = root / "AnnotationsByMD" / "400_junior" / "002.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:12]))
    load_split(root, "train", "senior", fmt="isbi")
    with pytest.raises(DataError, match=r"002\.txt:13: expected 19 landmark lines"):
        load_split(root, "train", "mean", fmt="isbi")
    path.write_text("1,2\n3;4\n" + "5,6\n" * 17)
    with pytest.raises(DataError, match=r"002\.txt:2: expected 'x,y'"):
        load_split(root, "train", "junior", fmt="isbi")
    with pytest.raises(DataError, match="folder missing"):
        load_split(tmp_path / "isbi" / "RawImage", "train", "mean", fmt="isbi")


def make_dataset(root: Path, cache: Path, **kwargs) -> LandmarkDataset:
    records = load_split(root, "train", "mean")
    return LandmarkDataset(
        records, 32, fmt="aariz", root=root, split="train", cache_dir=cache, **kwargs
    )


def test_dataset_items_and_coordinate_round_trip(synth, tmp_path):
    data = make_dataset(synth, tmp_path / "cache")
    image, coords, i, draws = data[1]
    assert draws.numel() == 0  # not augmented: the image is the model's input already
    assert i == 1 and image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1 and image.max() > 0
    assert coords.shape == (29, 2) and coords.dtype == torch.float32
    assert data.num_landmarks == 29 and len(data) == 4
    box = Letterbox.fit(64, 80, 32)
    assert data.boxes[1] == box
    np.testing.assert_allclose(coords.numpy(), box.forward(data.records[1].landmarks), atol=1e-4)
    np.testing.assert_allclose(
        data.to_original(1, coords.numpy()), data.records[1].landmarks, atol=1e-3
    )
    clone = pickle.loads(pickle.dumps(data))  # what a spawned DataLoader worker receives
    assert clone._images is None
    torch.testing.assert_close(clone[1][0], image)


def sample(data: LandmarkDataset, i: int) -> torch.Tensor:
    """Sample ``i``'s image as the model gets it (augmented where the step runs)."""
    image, _, _, draws = data[i]
    return data.images(image[None], draws[None])[0]


def test_augmentation_seeded_by_seed_epoch_and_index(synth, tmp_path):
    aug = AugmentConfig(rotation_deg=10, scale=0.1, translate=0.05, brightness=0.2, gamma=0.2)
    a = make_dataset(synth, tmp_path / "cache", augment=aug, seed=3)
    b = make_dataset(synth, tmp_path / "cache", augment=aug, seed=3)
    plain = make_dataset(synth, tmp_path / "cache")
    torch.testing.assert_close(sample(a, 2), sample(b, 2))
    assert not torch.equal(sample(a, 2), sample(plain, 2))
    first = a[2][1].clone()
    a.set_epoch(1)
    assert a.epoch == 1 and not torch.equal(a[2][1], first)
    b.set_epoch(1)
    torch.testing.assert_close(a[2][1], b[2][1])


def epochs(data: LandmarkDataset, workers: int) -> list[torch.Tensor]:
    loader = torch.utils.data.DataLoader(
        data, batch_size=2, num_workers=workers, persistent_workers=workers > 0
    )
    out = []
    for epoch in range(2):
        data.set_epoch(epoch)
        out += [
            torch.cat([data.images(images, draws).flatten(), coords.flatten()])
            for images, coords, _, draws in loader
        ]
    return out


def test_same_samples_with_and_without_persistent_workers(synth, tmp_path):
    aug = AugmentConfig(rotation_deg=10, scale=0.1, translate=0.05, contrast=0.2)
    data = make_dataset(synth, tmp_path / "cache", augment=aug, seed=1)
    single, multi = epochs(data, 0), epochs(data, 2)
    assert not torch.equal(single[0], single[2])  # epoch 1 draws differ from epoch 0
    for x, y in zip(single, multi, strict=True):
        torch.testing.assert_close(x, y, equal_nan=True)


@pytest.mark.parametrize("size", [[32, 64], "64x32"])
def test_rectangular_inputs_letterbox_only_as_needed(synth, tmp_path, size):
    """A portrait 64 x 80 image in a 32 x 64 input: scaled by 0.5, padded only vertically (the
    input's aspect is not the image's); landscape 64 x 32 pads only horizontally. Landmarks map
    back to original pixels."""
    data = make_dataset_sized(synth, tmp_path / "cache", size)
    image, coords, _, _ = data[0]
    width, height = (32, 64) if size == [32, 64] else (64, 32)
    assert image.shape == (1, height, width)
    box = data.boxes[0]
    assert box == Letterbox.fit(64, 80, (width, height))
    assert (box.pad_x == 0) != (box.pad_y == 0) or box.pad_x == box.pad_y == 0
    np.testing.assert_allclose(
        data.to_original(0, coords.numpy()), data.records[0].landmarks, atol=1e-3
    )
    rows = image[0].sum(dim=1)
    if box.pad_y:
        assert rows[: box.pad_y].sum() == 0 and rows[box.pad_y : height - box.pad_y].min() > 0


def make_dataset_sized(root: Path, cache: Path, size) -> LandmarkDataset:
    records = load_split(root, "train", "mean")
    return LandmarkDataset(records, size, fmt="aariz", root=root, split="train", cache_dir=cache)
