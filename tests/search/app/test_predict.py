"""Inference on new images, overlays, and ``predict`` with a model from a real MLflow registry."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from PIL import Image
from torch import nn

from search.app.predict import collect_images
from search.app.predict import predict as predict_files
from search.layout import Layout
from search.records.tracking import Tracking
from trainables.config import TrainConfig
from trainables.data.formats import symbols
from trainables.data.letterbox import Letterbox
from trainables.data.synth import SynthSpec, write_dataset
from trainables.errors import ConfigError, DataError
from trainables.eval import heatmap
from trainables.eval.inference import predict_images
from trainables.eval.overlay import PRED_COLOUR, TRUTH_COLOUR, draw_overlay
from trainables.eval.predictions import read_prediction
from trainables.eval.tta import TTA
from trainables.models import create_model

SIZE = 64
WIDTH, HEIGHT = 80, 100


def _meta(cfg: TrainConfig) -> dict:
    return {
        "image_size": cfg.image_size.value,
        "symbols": list(symbols("aariz")),
        "dataset_format": "aariz",
        "annotator": "mean",
        "stride": 4,
        "sigma": heatmap.adaptive_sigma(cfg.image_size),
        "config": cfg.to_dict(),
    }


def predict(*args, **kwargs) -> list[Path]:
    """``predict`` with the MLflow store the environment names, as the command has it."""
    return predict_files(Tracking(Layout.here()), *args, **kwargs)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A sqlite MLflow store with the tiny model registered as ``tiny@champion`` (pickled).

    Module-scoped because logging a model takes seconds; the environment and MLflow's global
    URIs (which ``set_tracking_uri`` also writes to ``os.environ``) are restored afterwards.
    """
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_REGISTRY_URI", uri)
        mp.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
        mp.setattr(mlflow.tracking._model_registry.utils, "_registry_uri", None)
        torch.manual_seed(0)
        cfg = TrainConfig(model="hrnet", backbone="hrnet_w18_small", image_size=SIZE)
        model = create_model(cfg, 29).eval()
        with mlflow.start_run():
            info = mlflow.pytorch.log_model(
                model,
                name="model",
                registered_model_name="tiny",
                metadata=_meta(cfg),
                serialization_format="pickle",
                pip_requirements=["torch"],  # skips requirement inference (a slow subprocess)
            )
        MlflowClient().set_registered_model_alias("tiny", "champion", info.registered_model_version)
        images = write_dataset(SynthSpec(n=4, width=WIDTH, height=HEIGHT, seed=0), root / "d")
        # All splits' images in one folder, as a user would point predict at.
        flat = root / "images"
        flat.mkdir()
        for path in sorted(images.glob("*/Cephalograms/*.png")):
            (flat / path.name).write_bytes(path.read_bytes())
        yield {"root": root, "model": model, "cfg": cfg, "images": flat, "run": info}


def test_predict_writes_json_and_overlays(registry, tmp_path):
    images = sorted(registry["images"].iterdir())
    out = tmp_path / "out"
    written = predict("models:/tiny@champion", [registry["images"]], out, None, overlay=True)
    assert written == [out / f"{p.stem}{ext}" for p in images for ext in (".json", ".png")]
    expected = predict_images(registry["model"], images, SIZE)
    for path, want in zip(images, expected, strict=True):
        doc = json.loads((out / f"{path.stem}.json").read_text())
        assert doc["ceph_id"] == path.stem
        assert "pixel_size_mm" not in doc, "a pixel size is never invented"
        xy = read_prediction(out / f"{path.stem}.json", symbols("aariz"))
        assert xy.shape == (29, 2)
        np.testing.assert_allclose(xy, want, atol=0.006)  # the JSON rounds to 0.01 px
        with Image.open(out / f"{path.stem}.png") as im:
            assert im.mode == "RGB" and max(im.size) == 1024


def test_predict_with_tta_merges_the_transforms(registry, tmp_path):
    images = sorted(registry["images"].iterdir())[:2]
    predict("models:/tiny@champion", images, tmp_path, None, False, tta=True)
    merged = predict_images(registry["model"], images, SIZE, tta=TTA())
    plain = predict_images(registry["model"], images, SIZE)
    assert np.abs(merged - plain).max() > 0.01  # the untrained model is not equivariant
    for path, want in zip(images, merged, strict=True):
        np.testing.assert_allclose(
            read_prediction(tmp_path / f"{path.stem}.json", symbols("aariz")), want, atol=0.006
        )


def test_pixel_size_is_recorded_when_given(registry, tmp_path):
    image = sorted(registry["images"].iterdir())[0]
    written = predict(f"runs:/{registry['run'].run_id}/model", [image], tmp_path, 0.1, False)
    assert written == [tmp_path / f"{image.stem}.json"]
    assert json.loads(written[0].read_text())["pixel_size_mm"] == 0.1
    with pytest.raises(ConfigError, match="pixel size"):
        predict("models:/tiny/1", [image], tmp_path, 0.0, False)


@pytest.mark.parametrize(
    "uri", ["models:/nope@champion", "models:/tiny@nope", "models:/tiny/9", "runs:/0badc0de/model"]
)
def test_unknown_model_is_one_line_config_error(registry, tmp_path, uri):
    with pytest.raises(ConfigError) as err:
        predict(uri, [registry["images"]], tmp_path / "out", None, False)
    assert uri in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_model_without_cephtune_metadata_is_config_error(registry, tmp_path):
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            nn.Linear(2, 2), name="model", serialization_format="pickle", pip_requirements=["torch"]
        )
    with pytest.raises(ConfigError, match="not a cephtune landmark model"):
        predict(info.model_uri, [registry["images"]], tmp_path, None, False)


def test_bad_inputs_are_data_errors_naming_the_file(registry, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no images here")
    uri, out = "models:/tiny@champion", tmp_path / "out"
    for bad in (text, corrupt, empty, tmp_path / "missing.png"):
        with pytest.raises(DataError, match=bad.name):
            predict(uri, [registry["images"], bad], out, None, False)
    assert not out.exists(), "nothing is written when any image is bad"


def test_collect_images_sorts_folders_and_rejects_clashing_stems(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.bmp", "skip.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in collect_images([tmp_path])] == ["a.jpg", "b.PNG", "c.bmp"]
    assert len(collect_images([tmp_path, tmp_path / "a.jpg"])) == 3  # named twice, counted once
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="a.json"):
        collect_images([tmp_path, other])


class PeakModel(nn.Module):
    """Gaussian heatmaps peaking where the letterbox puts ``points`` of an 80 x 100 image."""

    stride = 4

    def __init__(self, points: np.ndarray) -> None:
        super().__init__()
        box = Letterbox.fit(WIDTH, HEIGHT, SIZE)
        target = heatmap.to_heatmap(torch.tensor(box.forward(points)).float(), self.stride)
        self.register_buffer("maps", heatmap.encode(target[None], SIZE // 4, SIZE // 4, 1.5))
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps.expand(len(x), -1, -1, -1) + 0 * self.dummy


def test_predict_images_returns_original_pixels(tmp_path):
    points = np.array([[10.0, 15.0], [40.0, 50.0], [71.5, 88.25]])
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("L", (WIDTH, HEIGHT), 128).save(paths[-1])
    got = predict_images(PeakModel(points), paths, SIZE, batch_size=2)
    assert got.shape == (3, 3, 2)
    np.testing.assert_allclose(got, np.broadcast_to(points, got.shape), atol=0.05)


def _pixel(im: Image.Image, x: float, y: float) -> tuple[int, ...]:
    """The overlay's pixel at original point (x, y); pixel centres: u -> (u + 0.5) * s - 0.5."""
    s = 1024 / HEIGHT
    return im.getpixel((round((x + 0.5) * s - 0.5), round((y + 0.5) * s - 0.5)))


def test_draw_overlay_size_mode_and_positions(tmp_path):
    image = tmp_path / "ceph.png"
    Image.new("L", (WIDTH, HEIGHT), 60).save(image)
    pred = np.array([[40.0, 50.0], [20.0, 30.0]])
    truth = np.array([[10.0, 90.0], [np.nan, np.nan]])  # a landmark without ground truth
    out = draw_overlay(image, pred, ["S", "N"], tmp_path / "o" / "x.png", truth, title="t")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == (819, 1024)  # long side 1024, aspect kept
        assert _pixel(im, 40, 50) == PRED_COLOUR
        assert _pixel(im, 10, 90) == TRUTH_COLOUR
        assert _pixel(im, 60, 10) == (60, 60, 60)
    with pytest.raises(DataError, match="bad.png"):
        (tmp_path / "bad.png").write_bytes(b"nope")
        draw_overlay(tmp_path / "bad.png", pred, ["S", "N"], tmp_path / "y.png")


@pytest.mark.study
def test_exported_pt2_model_predicts_the_same(registry, tmp_path):
    """MLflow's default format outside Databricks (``pt2``): a graph without ``.stride``."""
    model, example = registry["model"], torch.rand(2, 1, SIZE, SIZE)
    signature = infer_signature(example.numpy(), model(example).detach().numpy())
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name="tiny_pt2",
            metadata=_meta(registry["cfg"]),
            input_example=example.numpy(),
            signature=signature,
            serialization_format="pt2",
            pip_requirements=["torch"],
        )
    images = sorted(registry["images"].iterdir())
    predict(f"models:/tiny_pt2/{info.registered_model_version}", images, tmp_path, None, False)
    expected = predict_images(model, images, SIZE)
    for path, want in zip(images, expected, strict=True):
        got = read_prediction(tmp_path / f"{path.stem}.json", symbols("aariz"))
        np.testing.assert_allclose(got, want, atol=0.006)
