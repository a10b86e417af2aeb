"""COCO keypoints and CSV datasets: read as their source, their landmark names their own, and a
broken file refused in one line naming the file and the key."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.cli import main
from tests.helpers import REPO
from trainables.data.check import check_dataset
from trainables.data.dataset import LandmarkDataset
from trainables.data.formats import FORMATS, detect, load_split, symbols
from trainables.data.landmarks import AARIZ_SYMBOLS
from trainables.data.records import SPLITS
from trainables.data.synth import SynthSpec, write_dataset
from trainables.errors import DataError


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_dataset(
        SynthSpec(n=12, width=80, height=100, seed=1), tmp_path_factory.mktemp("s")
    )


def converted(source: Path, out: Path, to: str) -> Path:
    assert main(["data", "convert", str(source), str(out), "--to", to]) == 0
    return out


@pytest.mark.parametrize("to", ["coco", "csv"])
def test_a_converted_dataset_reads_as_its_source(source, tmp_path, to, capsys):
    out = converted(source, tmp_path / to, to)
    assert detect(out) == to and symbols(to, out) == AARIZ_SYMBOLS
    for split in SPLITS:
        want = load_split(source, split, "mean", "aariz")
        got = load_split(out, split, "mean", to, verify=True)
        assert [r.ceph_id for r in got] == [r.ceph_id for r in want]
        assert [r.pixel_size for r in got] == pytest.approx([r.pixel_size for r in want])
        np.testing.assert_allclose(
            np.stack([r.landmarks for r in got]), np.stack([r.landmarks for r in want]), atol=1e-3
        )
    capsys.readouterr()
    assert main(["data", "check", str(out)]) == 0  # --format auto
    assert f"({to}, 29 landmarks): images train 8, valid 2, test 2" in capsys.readouterr().out
    with pytest.raises(DataError, match="one annotation per image .use annotator mean."):
        load_split(out, "train", "senior", to)


@pytest.mark.parametrize("to", ["coco", "csv"])
def test_a_conversion_stopped_half_way_leaves_nothing(source, tmp_path, to, monkeypatch, capsys):
    """Ctrl-C (or a full disk) while the images are copied: no half dataset at OUT, nothing
    hidden beside it, and the same command then converts."""
    import shutil

    copied, copy = [], shutil.copy2

    def copy_then_stop(*args, **kwargs):
        copied.append(args[0])
        if len(copied) == 10:  # train's 8 and 2 of valid: the test split never comes
            raise KeyboardInterrupt
        return copy(*args, **kwargs)

    monkeypatch.setattr(shutil, "copy2", copy_then_stop)
    out = tmp_path / "out"
    assert main(["data", "convert", str(source), str(out), "--to", to]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [] and len(copied) == 10
    monkeypatch.setattr(shutil, "copy2", copy)
    assert converted(source, out, to) == out and detect(out) == to


def three_landmarks(source: Path, tmp_path: Path) -> Path:
    """A CSV dataset of three landmarks named by its header, one of them left out once."""
    out = converted(source, tmp_path / "full", "csv")
    keep = {"Sella": "S", "Nasion": "N", "Menton": "Me"}
    for split in SPLITS:
        path = out / f"{split}.csv"
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "pixel_size", *(f"{n}_{a}" for n in keep for a in "xy")])
            for i, row in enumerate(rows):
                cells = [row[f"{s}_{a}"] for s in keep.values() for a in "xy"]
                if split == "train" and i == 0:
                    cells[2:4] = ["", ""]  # Nasion not annotated on this image
                w.writerow([row["file"], row["pixel_size"], *cells])
    return out


def test_landmark_names_come_from_the_file(source, tmp_path, cache_dir):
    root = three_landmarks(source, tmp_path)
    assert symbols("csv", root) == ("Sella", "Nasion", "Menton")
    train = load_split(root, "train", "mean", "csv", verify=True)
    assert train[0].landmarks.shape == (3, 2) and np.isnan(train[0].landmarks[1]).all()
    report = check_dataset(root, "csv")
    assert report.ok and report.num_landmarks == 3
    assert any("landmarks missing: Nasion" in w for w in report.warnings)
    data = LandmarkDataset(train, 64, fmt="csv", root=root, split="train", cache_dir=cache_dir)
    assert data.num_landmarks == 3 and data[0][1].shape == (3, 2)


def edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def edit_text(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def edit_cell(path: Path, line: int, column: int, value: str) -> None:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows[line - 1][column - 1] = value
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


COCO_CASES = {
    "no spacing": (
        lambda r: edit_json(r / "annotations/train.json", lambda d: d["images"][0].pop("spacing")),
        "annotations/train.json: images[0].spacing must be the pixel size in mm",
    ),
    "short keypoints": (
        lambda r: edit_json(
            r / "annotations/valid.json", lambda d: d["annotations"][1].update(keypoints=[1, 2, 2])
        ),
        "annotations/valid.json: annotations[1].keypoints must be [x, y, v] for each of 29",
    ),
    "two categories with keypoints": (
        lambda r: edit_json(
            r / "annotations/train.json", lambda d: d["categories"].append(dict(d["categories"][0]))
        ),
        "train.json: categories must hold one category with keypoints",
    ),
    "names differ between splits": (
        lambda r: edit_json(
            r / "annotations/test.json", lambda d: d["categories"][0]["keypoints"].reverse()
        ),
        "annotations/test.json: categories[0].keypoints must be the 29 names of",
    ),
    "two annotations of one image": (
        lambda r: edit_json(
            r / "annotations/train.json",
            lambda d: d["annotations"].append({**d["annotations"][0], "id": 99}),
        ),
        "annotations/train.json: annotations[8]: a second annotation of image 'synth",
    ),
    "an image without annotation": (
        lambda r: edit_json(r / "annotations/valid.json", lambda d: d["annotations"].pop()),
        "annotations/valid.json: no annotation for image 'synth",
    ),
    "a missing image file": (
        lambda r: next((r / "images" / "test").iterdir()).unlink(),
        "annotations/test.json: images[0].file_name: ",
    ),
    "two images with one id": (  # x.png and x.jpg: two pictures, one annotation
        lambda r: edit_json(
            r / "annotations/train.json",
            lambda d: d["images"].append({**d["images"][0], "id": 999}),
        ),
        "annotations/train.json: images[8].file_name: a second image with id 'synth",
    ),
    "one image id twice": (
        lambda r: edit_json(
            r / "annotations/valid.json", lambda d: d["images"].append(dict(d["images"][0]))
        ),
        "annotations/valid.json: images[2].id ",
    ),
    "a broken symlink for an image": (
        lambda r: broken_link(r / "images" / "train" / "synth00000.png"),
        "synth00000.png: a broken symlink or a symlink loop, not an image file",
    ),
    "annotations file is a folder": (
        lambda r: ((r / "annotations/valid.json").unlink(), (r / "annotations/valid.json").mkdir()),
        "annotations/valid.json: a folder, not a COCO keypoints file",
    ),
    "malformed JSON": (
        lambda r: (r / "annotations/train.json").write_text("{"),
        "annotations/train.json: malformed JSON (line 1",
    ),
}
CSV_CASES = {
    "no pixel size": (
        lambda r: edit_cell(r / "train.csv", 2, 2, ""),
        "train.csv:2: pixel_size must be the pixel size in mm, > 0 (never assumed), got ''",
    ),
    "half a landmark": (
        lambda r: edit_cell(r / "valid.csv", 2, 4, ""),
        "valid.csv:2: A_y must be a number of pixels, got ''",
    ),
    "a header without pairs": (
        lambda r: edit_text(r / "train.csv", "A_x,A_y", "A_x,B_y"),
        "train.csv:1: columns 3-4 must be NAME_x,NAME_y, got 'A_x','B_y'",
    ),
    "a header that is not ours": (
        lambda r: edit_text(r / "test.csv", "file,pixel_size", "image,spacing"),
        "test.csv:1: the header must be file,pixel_size,NAME_x,NAME_y",
    ),
    "names differ between splits": (
        lambda r: edit_text(r / "test.csv", "A_x,A_y", "Z_x,Z_y"),
        "test.csv:1: the landmark columns must be those of",
    ),
    "a row too short": (
        lambda r: edit_text(r / "train.csv", ".png,", ".png,1,2\nx.png,"),
        "train.csv:2: 3 columns, the header has 60",
    ),
    "a missing image file": (
        lambda r: next((r / "images" / "valid").iterdir()).unlink(),
        "valid.csv:",
    ),
    "two rows of one image": (
        lambda r: (r / "train.csv").write_text(
            (text := (r / "train.csv").read_text()) + text.splitlines()[1] + "\n"
        ),
        "train.csv:10: a second image with id 'synth",
    ),
    "a broken symlink for an image": (
        lambda r: broken_link(r / "images" / "test" / "synth00010.png"),
        "synth00010.png: a broken symlink or a symlink loop, not an image file",
    ),
}


def broken_link(image: Path) -> None:
    """``image`` replaced by a symlink to a file that does not exist."""
    image.unlink()
    image.symlink_to(image.with_name("gone.png"))


@pytest.mark.parametrize(
    "fmt, case", [("coco", c) for c in COCO_CASES] + [("csv", c) for c in CSV_CASES]
)
def test_a_broken_file_is_one_line_naming_the_file_and_the_key(source, tmp_path, fmt, case):
    root = converted(source, tmp_path / fmt, fmt)
    breaks, expect = (COCO_CASES if fmt == "coco" else CSV_CASES)[case]
    breaks(root)
    report = check_dataset(root, fmt)
    assert not report.ok and any(expect in e for e in report.errors), report.errors
    with pytest.raises(DataError) as info:
        for split in SPLITS:
            load_split(root, split, "mean", fmt, verify=True)
    assert expect in str(info.value) and "\n" not in str(info.value)


def example(page: str) -> str:
    """The fenced block under the page's ``## Example`` heading."""
    text = (REPO / page).read_text().split("## Example", 1)[1]
    return text.split("```", 2)[1].split("\n", 1)[1]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_has_its_page_and_the_reader_cites_it(fmt):
    reader = FORMATS[fmt]
    page = REPO / reader.page
    assert page.is_file() and f"(`format: {fmt}`)" in page.read_text().splitlines()[0]
    module = REPO / reader.index.__module__.replace(".", "/")
    assert f"``{reader.page}``" in module.with_suffix(".py").read_text()


@pytest.mark.parametrize("fmt", ["coco", "csv"])
def test_the_pages_example_reads_as_it_says(tmp_path, fmt):
    text = example(FORMATS[fmt].page)
    for name in ("0001", "0002"):
        (tmp_path / "images" / "train").mkdir(parents=True, exist_ok=True)
        Image.new("L", (1600, 2400)).save(tmp_path / "images" / "train" / f"{name}.png")
    target = {"coco": "annotations/{}.json", "csv": "{}.csv"}[fmt]
    for split in SPLITS:
        (tmp_path / target.format(split)).parent.mkdir(exist_ok=True)
        (tmp_path / target.format(split)).write_text(text)
    assert symbols(fmt, tmp_path) == ("S", "N", "Me")
    first = load_split(tmp_path, "train", "mean", fmt, verify=True)[0]
    assert first.ceph_id == "0001" and first.pixel_size == 0.1
    np.testing.assert_array_equal(first.landmarks[:2], [[812.5, 1003.0], [1490.0, 1021.5]])
    assert np.isnan(first.landmarks[2]).all()  # "its Me is not annotated"
