"""The trainable's training function on tiny synthetic data: metrics, precision, resume, NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import trainables.train
from trainables import checkpoint
from trainables.config import TrainConfig
from trainables.errors import ConfigError
from trainables.eval.inference import errors_mm
from trainables.eval.metrics import summarize
from trainables.precision import Precision
from trainables.run import build
from trainables.train import NAN_PATIENCE, NonFiniteLoss, run_training, train_epoch

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
    "nonfinite_steps",
}


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


def test_checkpoints_and_metrics_name_what_auto_resolved_to(data_dir, tmp_path):
    _, seen = collect(config(data_dir, tmp_path, epochs=1))  # precision: auto
    metrics, state = seen[0]
    assert (metrics["precision"], metrics["device"]) == ("fp32", "cpu")
    saved = state()
    assert (saved["precision"], saved["device"]) == ("fp32", "cpu")
    assert saved["config"]["precision"] == "auto"


def test_a_checkpoint_without_loss_scaling_resumes_with_it(data_dir, tmp_path):
    """An fp32 (or bf16) run saves its disabled scaler's ``{}``; an fp16 run on CUDA resuming
    it has an enabled scaler, which refuses ``{}``. ``GradScaler("cpu")`` stands in for it."""
    path = tmp_path / "ckpt.pt"
    cfg = config(data_dir, tmp_path, epochs=2)
    run_training(cfg, lambda m, state: m["epoch"] == 1 and checkpoint.save(path, state()))
    saved = checkpoint.load(path)
    assert saved["scaler"] == {}
    run = build(cfg)
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    run.restore(saved)
    assert run.epoch == 1 and run.scaler.get_scale() == 2.0**10
    run.epoch += 1
    assert math.isfinite(train_epoch(run)["train_loss"])


def test_optimizer_state_keeps_the_resuming_devices_options():
    """A CPU checkpoint must not turn a fused CUDA AdamW back into an unfused one, nor a CUDA
    checkpoint ask for fused kernels on CPU: ``load_state_dict`` takes the saved groups whole."""
    from trainables.run import device_options

    def adamw(fused):
        param = torch.nn.Parameter(torch.zeros(3))
        optimizer = torch.optim.AdamW([param], fused=fused)
        param.grad = torch.ones(3)
        optimizer.step()
        return optimizer

    saved = adamw(fused=True).state_dict()
    plain = adamw(fused=None)
    plain.load_state_dict(device_options(saved, plain))
    assert plain.param_groups[0]["fused"] is None
    assert plain.state_dict()["state"][0]["step"] == 1
    fused = adamw(fused=True)
    fused.load_state_dict(device_options(adamw(fused=None).state_dict(), fused))
    assert fused.param_groups[0]["fused"] is True


def non_finite_loss(monkeypatch, bad_steps):
    """The trainable's loss, non-finite on the steps in ``bad_steps`` (counted from 1): an fp16
    overflow a CPU cannot produce on demand."""
    real = trainables.train.create_loss
    calls = [0]

    def create(cfg):
        loss_fn = real(cfg)

        def loss(pred, target):
            calls[0] += 1
            value = loss_fn(pred, target)
            return value * math.inf if calls[0] in bad_steps else value

        return loss

    monkeypatch.setattr(trainables.train, "create_loss", create)


def scaled_run(data_dir, tmp_path):
    """A CPU run with loss scaling on, as fp16 on CUDA has: one step per image."""
    run = build(config(data_dir, tmp_path, batch_size=1, epochs=3, warmup_epochs=0))
    run.scaler = torch.amp.GradScaler("cpu")
    return run


def test_one_overflowing_step_is_skipped_not_a_failure(data_dir, tmp_path, monkeypatch):
    run = scaled_run(data_dir, tmp_path)
    non_finite_loss(monkeypatch, bad_steps={2})
    scale = run.scaler.get_scale()
    run.epoch = 1
    metrics = train_epoch(run)
    assert metrics["nonfinite_steps"] == 1 and math.isfinite(metrics["train_loss"])
    assert run.scaler.get_scale() < scale  # the GradScaler skipped that step
    assert all(torch.isfinite(p).all() for p in run.model.parameters())


def test_persistent_non_finite_loss_fails_even_with_loss_scaling(data_dir, tmp_path, monkeypatch):
    run = scaled_run(data_dir, tmp_path)
    steps = len(run.loader)
    non_finite_loss(monkeypatch, bad_steps=set(range(3, 10 * steps)))
    run.epoch = 1
    assert train_epoch(run)["nonfinite_steps"] == steps - 2  # not yet NAN_PATIENCE in a row
    run.epoch = 2
    with pytest.raises(NonFiniteLoss, match=f"nan_loss: .* for {NAN_PATIENCE} steps in a row"):
        train_epoch(run)


def test_rectangular_input_at_heatmap_stride_2_with_flips_trains(data_dir, tmp_path):
    cfg = config(data_dir, tmp_path, image_size=[64, 96], heatmap_stride=2, aug_flip=True)
    run, seen = collect(cfg)
    assert run.model.stride == 2
    assert run.sigma == pytest.approx(1.5 * 96 / 256 * 4 / 2)  # the long side's, per stride
    assert all(math.isfinite(m["mre_mm"]) and math.isfinite(m["train_loss"]) for m, _ in seen)


def test_progressive_stages_train_at_lower_sizes_first_and_carry_the_weights(data_dir, tmp_path):
    """Stages "1@32,1@64x32" then image_size 64: each epoch at its stage's input size (reported
    as input_px), sigma following it, the model and optimiser carried over; a resume from the
    first epoch's checkpoint continues at the later sizes."""
    cfg = config(data_dir, tmp_path, epochs=3, progressive_stages=[[1, 32], [1, "64x32"]])
    assert cfg.progressive_stages.value == "1@32,1@64x32"
    sizes = []

    def report(metrics, state):
        saved = state()
        # The state holds the live tensors: keep what this epoch's one says now.
        sizes.append((metrics["input_px"], float(saved["optimizer"]["state"][0]["step"])))
        checkpoint.save(tmp_path / f"epoch{metrics['epoch']}.pt", saved)
        assert math.isfinite(metrics["mre_mm"])

    run = run_training(cfg, report)
    assert [px for px, _ in sizes] == [32.0, 64.0, 64.0]
    assert run.size.value == 64 and run.sigma == pytest.approx(1.5 * 64 / 256)
    # The optimiser (and so the weights it steps) carried over: its step count kept counting.
    steps = [step for _, step in sizes]
    assert steps == [steps[0], 2 * steps[0], 3 * steps[0]] and steps[0] > 0
    resumed = []
    resume = checkpoint.load(tmp_path / "epoch1.pt")
    run_training(cfg, lambda m, state: resumed.append(m["input_px"]), resume=resume)
    assert resumed == [64.0, 64.0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2@256,x@512", "progressive_stages must be \\[\\[epochs, size\\], ...\\]"),
        ([[0, 256]], "progressive_stages must give every stage >= 1 epochs, got 0@256"),
        ("2@250", "stage 2@250: size must be a multiple of 32"),
        ([[2, 2048]], "size must be at most 1024 px a side"),
    ],
)
def test_bad_progressive_stages_are_config_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({"progressive_stages": value})


def test_every_kind_of_allocation_failure_is_out_of_memory():
    """CUDA's error type, the CPU allocator's text and MemoryError map to one oom reason; other
    errors do not (the real CPU failure is the test above)."""
    from trainables.memory import is_out_of_memory, out_of_memory

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 9 bytes"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    err = out_of_memory(torch.OutOfMemoryError("CUDA out of memory.\nmore"), "epoch 3")
    assert str(err) == "oom: epoch 3: OutOfMemoryError: CUDA out of memory." and err.reason == "oom"


def test_a_model_is_scored_outside_training_in_the_numerics_validation_used(data_dir, tmp_path):
    """A bf16 run (autocast on this CPU): the valid MRE that its last epoch reported is the one
    promote's and the candidates' inference path gives for the same weights, to the bit."""
    cfg = config(data_dir, tmp_path, precision="bf16", epochs=1)
    run, seen = collect(cfg)
    precision = Precision.for_inference(cfg.precision)
    errors = errors_mm(run.model, run.valid, precision, cfg.batch_size)
    assert precision.name == "bf16"
    assert summarize(errors)["mre_mm"] == seen[-1][0]["mre_mm"]
    fp32 = errors_mm(run.model, run.valid, Precision.for_inference("fp32"), cfg.batch_size)
    assert summarize(fp32)["mre_mm"] != seen[-1][0]["mre_mm"]  # the check can tell them apart
