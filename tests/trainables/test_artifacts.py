"""The contract both sides import (``trainables.artifacts``): which checkpoint is kept, the
registered model's metadata and its required keys (serving checks them), the ``final/`` folder
and its ``test_metrics.json``."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import tiny_config
from trainables import checkpoint
from trainables.artifacts import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    CheckpointPolicy,
    FinalDir,
    ModelMetadata,
    TestMetrics,
)
from trainables.config import TrainConfig
from trainables.data.synth import SynthSpec, write_dataset
from trainables.errors import ConfigError
from trainables.eval.ensemble import Ensemble
from trainables.models import create_model
from trainables.train import run_training


def test_the_policy_follows_the_metric_and_its_mode():
    default = CheckpointPolicy.of(TrainConfig())
    assert (default.metric, default.mode, default.tested) == ("mre_mm", "min", BEST_CHECKPOINT)
    sdr = CheckpointPolicy.of(TrainConfig(best_metric="sdr_2mm"))
    assert sdr.mode == "max"  # a detection rate: higher is better
    assert sdr.improves({"sdr_2mm": 0.6}, 0.5) and not sdr.improves({"sdr_2mm": 0.4}, 0.5)
    assert not sdr.improves({"sdr_2mm": 0.5}, 0.5)  # a tie keeps the earlier epoch
    assert sdr.improves({"sdr_2mm": 0.0}, None)
    assert CheckpointPolicy.of(TrainConfig(best_metric="mre_mm", best_mode="max")).mode == "max"
    # Selection on valid means nothing once valid is trained on: the last epoch is tested.
    assert CheckpointPolicy.of(TrainConfig(train_on="train+valid")).tested == LAST_CHECKPOINT


@pytest.mark.parametrize(
    ("values", "rule"),
    [
        ({"best_metric": "accuracy"}, "best_metric must be one of mre_mm"),
        ({"best_mode": "up"}, "best_mode must be one of min, max, got 'up'"),
    ],
)
def test_a_bad_policy_is_a_one_line_config_error(values, rule):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(values, where="one.yaml")
    assert str(err.value).startswith(f"one.yaml: {rule}") and "\n" not in str(err.value)


def test_a_run_keeps_the_best_of_its_policys_metric(tmp_path):
    data = write_dataset(SynthSpec(n=8, width=80, height=100, seed=4), tmp_path / "d")
    cfg = tiny_config(data_dir=str(data), cache_dir=str(tmp_path / "c"), epochs=3, lr=1e-3,
                      best_metric="sdr_4mm")  # fmt: skip
    seen = []
    run = run_training(cfg, lambda metrics, state: seen.append(metrics["sdr_4mm"]))
    assert run.best == max(seen)


def test_metadata_round_trips_for_a_model_and_an_ensemble():
    cfg = tiny_config(dataset_format="isbi", image_size=[64, 96], aug_flip=True)
    model = create_model(cfg, 19)
    meta = ModelMetadata.describe(model, cfg)
    assert (meta.image_size, meta.stride, len(meta.symbols)) == ("64x96", 4, 19)
    assert meta.aug_flip and meta.ensemble is None
    # Plain data for MLflow's YAML, read back as it was written.
    plain = json.loads(json.dumps(meta.to_dict()))
    assert ModelMetadata.from_dict(plain, "models:/m/1") == meta

    both = Ensemble([model, model], ["64x96", 64], [True, False])
    members = ModelMetadata.describe(both, cfg).to_dict()["ensemble"]
    assert members == [
        {"image_size": "64x96", "stride": 4, "aug_flip": True},
        {"image_size": 64, "stride": 4, "aug_flip": False},
    ]
    assert ModelMetadata.from_dict(ModelMetadata.describe(both, cfg).to_dict(), "m").ensemble


def test_metadata_without_the_required_keys_is_one_line():
    with pytest.raises(ConfigError) as err:
        ModelMetadata.from_dict({"image_size": 64}, "models:/other/1")
    assert str(err.value) == (
        "model 'models:/other/1' is not a cephtune landmark model "
        "(metadata lacks ['symbols', 'stride'])"
    )


def test_serving_refuses_a_model_without_the_required_metadata(tmp_path):
    """What ``mlflow models serve`` loads: a pyfunc whose metadata lacks the keys fails in one
    line before its network is unpickled (a ``KeyError`` at the first request before)."""
    import mlflow.pytorch

    from trainables.eval import serving

    folder = tmp_path / "model"
    mlflow.pytorch.save_model(
        torch.nn.Linear(2, 2), str(folder), serialization_format="pickle",
        pip_requirements=["torch"], metadata={"image_size": 64},
    )  # fmt: skip
    with pytest.raises(ConfigError) as err:
        serving._load_pyfunc(str(folder / "data"))
    assert "is not a cephtune landmark model (metadata lacks ['symbols', 'stride'])" in str(
        err.value
    )
    assert "\n" not in str(err.value)


def test_the_final_folder_and_its_test_metrics(tmp_path):
    final = FinalDir(tmp_path / "final")
    assert TestMetrics.read(final) is None  # not promoted yet
    assert final.last == tmp_path / "final" / "checkpoints" / LAST_CHECKPOINT
    metrics = TestMetrics({"mre_mm": 1.5, "sdr_2mm": 0.75}, images=3, per_landmark={"S": {}})
    metrics.write(final)
    written = json.loads(final.test_metrics.read_text())
    assert written["mre_mm"] == 1.5 and written["tta"] == "none"
    assert "selection" not in written and "ensemble" not in written  # a single model
    assert TestMetrics.read(final) == metrics
    final.test_metrics.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a JSON object, got list"):
        TestMetrics.read(final)


def test_a_model_is_rebuilt_from_its_checkpoint(tmp_path):
    cfg = tiny_config()
    torch.manual_seed(1)
    model = create_model(cfg, 29)
    checkpoint.save(tmp_path / BEST_CHECKPOINT, {"model": model.state_dict()})
    rebuilt = checkpoint.rebuild(cfg, tmp_path / BEST_CHECKPOINT)
    assert not rebuilt.training
    for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values(), strict=True):
        assert torch.equal(a, b)
