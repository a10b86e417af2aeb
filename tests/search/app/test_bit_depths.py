"""Images of every bit depth a clinic exports are read onto one intensity scale: a dataset of
16-bit PNGs (a DICOM export) trains, predicts and draws as its 8-bit copy does, and `data check`
says which depths it found. PIL's own ``convert("L")`` clipped 16-bit values at 255: a white
sheet."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from search.cli import main
from trainables.checkpoint import rebuild
from trainables.config import TrainConfig
from trainables.data.landmarks import AARIZ_SYMBOLS
from trainables.data.letterbox import load_image
from trainables.data.synth import SynthSpec, write_dataset
from trainables.eval.inference import predict_images
from trainables.eval.overlay import draw_overlay

# How each copy stores the 8-bit grey values v: (PIL mode, the array it is made of).
COPIES = {
    "16-bit grey": lambda v: v.astype(np.uint16) * 257,
    "12-bit grey": lambda v: v.astype(np.uint16) * 16,  # 12 significant bits in 16
    "RGB": lambda v: np.stack([v] * 3, axis=-1),
    "float grey": lambda v: v.astype(np.float32) / 255,
}


def copy_as(source, target, kind: str) -> int:
    """``source`` with every image rewritten as ``kind`` (TIFF for float); images written."""
    shutil.copytree(source, target)
    written = 0
    for path in sorted(target.rglob("*.png")):
        values = np.asarray(Image.open(path).convert("L"))
        made = Image.fromarray(COPIES[kind](values))
        path.unlink()
        made.save(path.with_suffix(".tif") if kind == "float grey" else path)
        written += 1
    return written


@pytest.fixture
def eight_bit(project):
    return write_dataset(SynthSpec(n=8, width=80, height=100, seed=5), project / "data")


def images(root):
    return sorted((root / "test" / "Cephalograms").iterdir())


@pytest.mark.parametrize("kind", list(COPIES))
def test_every_bit_depth_decodes_to_the_8_bit_values(eight_bit, project, kind, capsys):
    written = copy_as(eight_bit, project / kind.replace(" ", "_"), kind)
    copy = project / kind.replace(" ", "_")
    if kind != "float grey":  # the formats' images are PNG, JPEG or BMP
        assert main(["data", "check", str(copy), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["bit_depths"] == {kind: written}
        assert main(["data", "check", str(copy)]) == 0
        assert f"pixels: {kind} {written}" in capsys.readouterr().out
    off = 1 if kind == "12-bit grey" else 0  # 255/4095 per step: within the scale's rounding
    for a, b in zip(images(eight_bit), images(copy), strict=True):
        first, second = load_image(a, 64)[0].astype(int), load_image(b, 64)[0].astype(int)
        assert np.abs(first - second).max() <= off, b.name


def test_a_16_bit_dataset_trains_predicts_and_draws_as_its_8_bit_copy(eight_bit, project, capsys):
    copy_as(eight_bit, project / "deep", "16-bit grey")
    best = {}
    for folder in ("data", "deep"):
        values = dict(
            data_dir=folder,
            model="hrnet",
            backbone="hrnet_w18_small",
            image_size=64,
            batch_size=4,
            epochs=1,
            warmup_epochs=0,
            lr=1e-3,
        )
        (project / f"{folder}.yaml").write_text(yaml.safe_dump(values))
        assert main(["train", f"{folder}.yaml"]) == 0
        best[folder] = re.search(r"best valid (.*)", capsys.readouterr().out)[1]
    assert best["data"] == best["deep"]  # the same images: the same training, to the digit

    cfg = TrainConfig.from_dict(yaml.safe_load((project / "data.yaml").read_text()))
    model = rebuild(cfg, project / "runs" / "data" / "best.pt")
    eight = predict_images(model, images(eight_bit), 64)
    sixteen = predict_images(model, images(project / "deep"), 64)
    np.testing.assert_allclose(sixteen, eight, atol=1e-6)

    drawn = []
    for path in (images(eight_bit)[0], images(project / "deep")[0]):
        out = project / f"{path.parent.parent.parent.name}.png"
        draw_overlay(path, eight[0], AARIZ_SYMBOLS, out)
        drawn.append(np.asarray(Image.open(out).convert("L"), dtype=float).mean())
    assert abs(drawn[0] - drawn[1]) < 0.5 and drawn[1] < 200  # not a white sheet


def test_an_image_with_an_exif_orientation_is_read_as_it_is_shown(eight_bit, project, capsys):
    """A film photographed sideways: the pixels are stored turned, with EXIF orientation 6
    (turn 90° clockwise to show), and the landmarks were placed on the image as shown, as
    browsers and annotation tools show it. It is read as shown: its letterboxed pixels are
    the upright copy's, and its (portrait) landmarks lie inside it."""
    turned = project / "turned"
    shutil.copytree(eight_bit, turned)
    exif = Image.Exif()
    exif[0x0112] = 6
    written = 0
    for path in sorted(turned.rglob("*.png")):
        upright = Image.open(path).convert("L")
        upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)  # stored sideways
        assert Image.open(path).size == upright.size[::-1]
        written += 1
    assert main(["data", "check", str(turned), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["turned"] == written, report["errors"]
    assert main(["data", "check", str(turned)]) == 0
    assert f"{written} images have an EXIF orientation: read turned" in capsys.readouterr().out
    for a, b in zip(images(eight_bit), images(turned), strict=True):
        np.testing.assert_array_equal(load_image(b, 64)[0], load_image(a, 64)[0], b.name)
