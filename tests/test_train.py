"""The trainable's training function on tiny synthetic data: metrics, precision, resume, NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables import checkpoint
from trainables.config import TrainConfig
from trainables.errors import ConfigError
from trainables.synth import SynthSpec, write_dataset
from trainables.train import NonFiniteLoss, run_training

REPORTED = {
    "mre_mm",
    "mre_sd_mm",
    "sdr_2mm",
    "sdr_2_5mm",
    "sdr_3mm",
    "sdr_4mm",
    "train_loss",
    "lr",
    "epoch",
    "samples_per_s",
    "data_wait_frac",
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "synth"
    return str(write_dataset(SynthSpec(n=10, width=80, height=100, seed=5), root))


def config(data_dir, tmp_path, **overrides) -> TrainConfig:
    values = dict(
        data_dir=data_dir,
        cache_dir=str(tmp_path / "cache"),
        model="hrnet",
        backbone="hrnet_w18_small",
        image_size=64,
        batch_size=4,
        epochs=2,
        warmup_epochs=1,
        lr=1e-3,
    )
    values.update(overrides)
    return TrainConfig.from_dict(values)


def collect(cfg, resume=None):
    seen = []
    run = run_training(cfg, lambda metrics, state: seen.append((metrics, state)), resume)
    return run, seen


def test_reports_every_metric_each_epoch(data_dir, tmp_path):
    _, seen = collect(config(data_dir, tmp_path))
    assert [m["epoch"] for m, _ in seen] == [1, 2]
    for metrics, _ in seen:
        assert REPORTED <= set(metrics)
        assert all(math.isfinite(metrics[k]) for k in REPORTED)
        assert 0 <= metrics["data_wait_frac"] < 1 and metrics["samples_per_s"] > 0


def test_checkpoint_resume_continues_exactly(data_dir, tmp_path):
    path = tmp_path / "ckpt.pt"
    seen = []

    def report(metrics, state):
        seen.append(metrics)
        if metrics["epoch"] == 1:
            checkpoint.save(path, state())

    straight = run_training(config(data_dir, tmp_path, epochs=3, augment=True), report)
    loaded = checkpoint.load(path)
    assert loaded["epoch"] == 1 and loaded["config"]["epochs"] == 3
    assert {"torch", "timm", "numpy", "python"} <= set(loaded["versions"])
    assert "git_commit" in loaded
    resumed, seen2 = collect(config(data_dir, tmp_path, epochs=3, augment=True), loaded)
    assert [m["epoch"] for m, _ in seen2] == [2, 3]
    assert seen2[-1][0]["mre_mm"] == pytest.approx(seen[-1]["mre_mm"], rel=1e-5)
    for a, b in zip(
        straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_bf16_mixed_precision_runs_on_cpu(data_dir, tmp_path):
    _, seen = collect(config(data_dir, tmp_path, precision="bf16", epochs=1))
    assert np.isfinite(seen[0][0]["mre_mm"])


def test_fp16_on_cpu_is_a_config_error(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        collect(config(data_dir, tmp_path, precision="fp16", epochs=1))


def test_non_finite_loss_stops_the_run_at_once(data_dir, tmp_path):
    seen = []
    with pytest.raises(NonFiniteLoss, match="nan_loss"):
        run_training(
            config(data_dir, tmp_path, lr=1e12, warmup_epochs=0, epochs=20),
            lambda metrics, state: seen.append(metrics),
        )
    assert len(seen) < 20


def test_resume_continues_exactly_with_loader_workers(data_dir, tmp_path):
    """With workers the loader draws its base seed when its iterator is created: it must not
    take it from the shuffle stream, or a run resumed at epoch k shuffles differently."""
    path = tmp_path / "ckpt.pt"

    def report(metrics, state):
        if metrics["epoch"] == 1:
            checkpoint.save(path, state())

    cfg = config(data_dir, tmp_path, epochs=2, num_workers=1, augment=True)
    straight = run_training(cfg, report)
    resumed, _ = collect(cfg, checkpoint.load(path))
    for a, b in zip(
        straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
