"""check_dataset collects every problem of a dataset folder into one report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trainables.data.check import check_dataset
from trainables.data.synth import SynthSpec, write_dataset
from trainables.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return write_dataset(
        SynthSpec(n=6, width=64, height=80, seed=0), tmp_path_factory.mktemp("s") / "d"
    )


def ann_dir(root: Path, split: str, who: str) -> Path:
    return root / split / "Annotations" / "Cephalometric Landmarks" / f"{who} Orthodontists"


def test_clean_dataset_is_ok(synth):
    report = check_dataset(synth, "aariz")
    assert report.ok and report.errors == [] and report.leaks == []
    assert report.counts == {"train": 4, "valid": 1, "test": 1}
    assert report.landmarks_per_image == {s: [29, 29] for s in ("train", "valid", "test")}
    low, high = report.pixel_size_mm
    assert 0 < low <= high
    json.dumps(report.to_dict())
    assert report.summary_lines()[-1] == "OK"


def test_finds_leak_missing_symbol_and_collects_every_error(synth, tmp_path):
    root = Path(shutil.copytree(synth, tmp_path / "d"))
    train_image = root / "train" / "Cephalograms" / "synth00001.png"
    test_image = next((root / "test" / "Cephalograms").iterdir())
    shutil.copyfile(train_image, test_image)  # a train/test leak
    path = ann_dir(root, "valid", "Junior") / "synth00004.json"
    doc = json.loads(path.read_text())
    doc["landmarks"] = [m for m in doc["landmarks"] if m["symbol"] != "Ar"]
    path.write_text(json.dumps(doc))
    bad = root / "train" / "Cephalograms" / "synth00002.png"
    bad.write_bytes(b"not an image")
    (ann_dir(root, "train", "Senior") / "synth00003.json").write_text("{")
    doc = json.loads((ann_dir(root, "train", "Junior") / "synth00000.json").read_text())
    doc["landmarks"][0]["symbol"] = "XX"
    (ann_dir(root, "train", "Junior") / "synth00000.json").write_text(json.dumps(doc))

    report = check_dataset(root, "aariz")
    assert not report.ok
    assert report.leaks == [[str(train_image), str(test_image)]]
    assert any("synth00004.json: landmarks missing: Ar" in w for w in report.warnings)
    assert report.landmarks_per_image["valid"] == [28, 29]
    assert report.unreadable == [str(bad)]
    text = "\n".join(report.errors)
    assert "synth00002.png: unreadable image (no image format PIL knows)" in text
    assert "BytesIO" not in text
    assert "synth00003.json: malformed landmark JSON" in text
    assert "synth00000.json: unknown landmark symbols XX" in text
    assert len(report.errors) == 3
    assert report.summary_lines()[-1] == "FAILED: 3 errors"
    assert json.loads(json.dumps(report.to_dict()))["ok"] is False


def test_missing_csv_id_and_folder_are_reported(synth, tmp_path):
    root = Path(shutil.copytree(synth, tmp_path / "d"))
    csv = root / "cephalogram_machine_mappings.csv"
    csv.write_text(
        "\n".join(line for line in csv.read_text().splitlines() if "synth00005" not in line)
    )
    shutil.rmtree(root / "valid")
    report = check_dataset(root, "aariz")
    assert report.counts == {"train": 4, "test": 1}
    assert any("valid: folder missing" in e for e in report.errors)
    assert any("no pixel size for id 'synth00005'" in e for e in report.errors)
    with pytest.raises(ConfigError, match="known: aariz, coco, csv, isbi"):
        check_dataset(root, "nope")


def test_an_annotation_that_is_a_folder_is_an_error_of_data_check(synth, tmp_path, capsys):
    """Through the CLI: the folder is named and the rest is still checked (was a traceback)."""
    from search.cli import main

    root = Path(shutil.copytree(synth, tmp_path / "d"))
    folder = ann_dir(root, "train", "Senior") / "synth00001.json"
    folder.unlink()
    folder.mkdir()
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr()
    assert f"ERROR {folder}: a folder, not an annotation file" in out.out
    assert out.out.rstrip().endswith("FAILED: 1 errors") and "Traceback" not in out.err


def test_data_check_names_a_split_folder_and_the_format_a_broken_folder_looks_like(
    synth, tmp_path, capsys
):
    from search.cli import main

    assert main(["data", "check", str(synth / "train")]) == 2
    err = capsys.readouterr().err
    assert f"{synth / 'train'}: a split folder of the aariz dataset {synth}" in err
    assert "give the dataset folder" in err and err.count("\n") == 1
    root = Path(shutil.copytree(synth, tmp_path / "d"))
    (root / "train" / "Cephalograms" / "lost.png").symlink_to("nowhere.png")
    assert main(["data", "check", str(root)]) == 2  # --format auto: which format, what broke
    err = capsys.readouterr().err
    assert f"{root} looks like aariz, but {root}/train/Cephalograms/lost.png: a broken" in err


@pytest.mark.parametrize("damage", ["damaged_pixels", "without_iend"])
def test_data_check_and_start_agree_on_an_incomplete_png(synth, tmp_path, capsys, damage):
    """Damaged pixel data with its checksums made right (passed start's checksum check) and a
    PNG without IEND (decodes; data check said OK): both are unreadable to both checks. The
    start side is in tests/trainables/data/test_bad_datasets.py."""
    from search.cli import main
    from tests import bad_images
    from trainables.data.formats import load_split

    root = Path(shutil.copytree(synth, tmp_path / "d"))
    getattr(bad_images, damage)("train/Cephalograms/synth00002.png")(root)
    assert main(["data", "check", str(root)]) == 1
    assert "synth00002.png: unreadable image" in capsys.readouterr().out
    with pytest.raises(DataError, match="synth00002.png: unreadable image"):
        load_split(root, "train", "mean", "aariz", verify=True)
