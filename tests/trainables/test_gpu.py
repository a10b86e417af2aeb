"""The CUDA paths, on a GPU: skipped with the reason elsewhere. ``make gpu-check`` runs them.

What the CPU suite decides (``tests/test_devices.py``, ``tests/test_train.py``) is checked here
where it matters: real Ray trials given 0 and 0.25 GPU, the memory cap of a GPU share, a step
that never syncs the host, AMP losses finite, a CPU checkpoint resumed on CUDA and back, the
bf16/fp16 choice against the card, and inference on the GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import REPO, tiny_study, trial_runs
from trainables import checkpoint
from trainables.config import TrainConfig
from trainables.data.synth import SynthSpec, write_dataset
from trainables.device import gpu_share, memory_fraction
from trainables.losses import create_loss
from trainables.precision import choose_precision, native_bf16
from trainables.run import build
from trainables.train import run_training, train_epoch, train_step

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs CUDA (make gpu-check on a machine with a GPU)"
    ),
]
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu") / "synth"
    return str(write_dataset(SynthSpec(n=24, width=160, height=200, seed=5), root))


def config(data_dir, tmp_path, **overrides) -> TrainConfig:
    values = dict(
        data_dir=data_dir,
        cache_dir=str(tmp_path / "cache"),
        backbone="hrnet_w18_small",
        image_size=128,
        batch_size=4,
        epochs=2,
        warmup_epochs=0,
        lr=1e-3,
        num_workers=1,
    )
    values.update(overrides)
    return TrainConfig.from_dict(values)


def test_auto_precision_matches_the_card():
    major, minor = torch.cuda.get_device_capability()
    assert native_bf16(CUDA) == (major >= 8)
    assert choose_precision("auto", "cuda", native_bf16(CUDA)) == ("bf16" if major >= 8 else "fp16")


@pytest.mark.parametrize("precision", ["auto", "fp16", "fp32"])
def test_an_amp_epoch_on_cuda_is_finite_with_a_fused_optimizer(data_dir, tmp_path, precision):
    run = build(config(data_dir, tmp_path, precision=precision), "cuda")
    assert run.precision.device.type == "cuda"
    assert run.optimizer.param_groups[0]["fused"] is True
    assert run.scaler.is_enabled() == (run.precision.name == "fp16")
    run.epoch = 1
    metrics = train_epoch(run)
    assert np.isfinite(metrics["train_loss"]) and metrics["nonfinite_steps"] <= 2


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_a_training_step_never_waits_for_the_gpu(data_dir, tmp_path, precision):
    """No host sync in a step: targets, forward, loss, GradScaler and fused AdamW all stay on
    the device (``torch.cuda.set_sync_debug_mode`` raises on any synchronising call)."""
    run = build(config(data_dir, tmp_path, precision=precision), "cuda")
    loss_fn = create_loss(run.cfg)
    images, coords, _, draws = next(iter(run.loader))
    images = run.train.images(images, draws)
    images, coords = run.precision.batch(images), coords.pin_memory()
    train_step(run, loss_fn, images, coords.to(CUDA, non_blocking=True))  # lazy inits
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            train_step(run, loss_fn, images, coords.to(CUDA, non_blocking=True))
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_a_cpu_checkpoint_resumes_on_cuda_and_back(data_dir, tmp_path):
    cpu_ckpt, cuda_ckpt = tmp_path / "cpu.pt", tmp_path / "cuda.pt"

    def saver(path, epoch):
        return lambda m, state: m["epoch"] == epoch and checkpoint.save(path, state())

    run_training(config(data_dir, tmp_path, epochs=3), saver(cpu_ckpt, 1), device="cpu")
    saved = checkpoint.load(cpu_ckpt)
    assert (saved["precision"], saved["device"], saved["scaler"]) == ("fp32", "cpu", {})
    for precision in ("fp16", "auto"):  # an enabled GradScaler, and what auto picks here
        cfg = config(data_dir, tmp_path, epochs=3, precision=precision)
        run = run_training(cfg, saver(cuda_ckpt, 2), resume=saved, device="cuda")
        assert run.epoch == 3 and run.optimizer.param_groups[0]["fused"] is True
    on_cuda = checkpoint.load(cuda_ckpt)
    assert on_cuda["device"] == "cuda"
    cfg = config(data_dir, tmp_path, epochs=3)
    back = run_training(cfg, lambda metrics, state: None, on_cuda, device="cpu")
    assert back.optimizer.param_groups[0]["fused"] is None


def test_a_gpu_share_caps_the_trials_memory_and_releases_it():
    import gc

    total = torch.cuda.get_device_properties(0).total_memory
    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_reserved(0)  # cuBLAS workspaces may stay
    with gpu_share("cuda", 0.25):
        assert torch.cuda.get_per_process_memory_fraction(0) == pytest.approx(
            memory_fraction(0.25, total)
        )
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(int(0.3 * total), dtype=torch.uint8, device=CUDA)
        kept = torch.empty(64 << 20, dtype=torch.uint8, device=CUDA)
        del kept
    assert torch.cuda.memory_reserved(0) <= before  # the cache went back to the driver
    assert torch.cuda.get_per_process_memory_fraction(0) == 1.0


def test_inference_runs_on_the_gpu(data_dir, tmp_path):
    """What ``predict`` and ``promote``'s test evaluation do: the model on the GPU there is."""
    from trainables.eval.inference import predict_images
    from trainables.models import create_model
    from trainables.precision import Precision

    cfg = config(data_dir, tmp_path)
    model = create_model(cfg, 29).eval()
    batch = torch.rand(2, 1, cfg.image_size.height, cfg.image_size.width)
    with torch.no_grad():
        on_cpu = model(batch)
    paths = sorted((Path(data_dir) / "test" / "Cephalograms").iterdir())[:4]
    preds = predict_images(model, paths, cfg.image_size, Precision.for_inference())
    assert next(model.parameters()).device.type == "cuda"
    assert preds.shape == (len(paths), 29, 2) and np.isfinite(preds).all()
    with torch.no_grad():
        on_gpu = model(batch.cuda()).cpu()
    assert torch.allclose(on_cpu, on_gpu, atol=1e-2, rtol=1e-2)  # TF32 convolutions


SCRIPT = """\
import json, os, sys
import ray
from search.cli import main
from search.run.cluster import ensure_ray

ensure_ray()


@ray.remote
def seen():
    import torch
    return os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.is_available()


out = {
    "none": ray.get(seen.options(num_gpus=0).remote()),
    "quarter": ray.get(seen.options(num_gpus=0.25).remote()),
    "codes": [main(["start", path]) for path in sys.argv[1:]],
}
print(json.dumps(out))
"""


def test_real_ray_trials_train_where_their_resources_say(project):
    """A trial given no GPU trains on CPU and sees no GPU; one given 0.25 trains on CUDA in
    the precision ``auto`` picks for this card (its own Ray: the suite's has no GPU)."""
    files = []
    for name, gpu in (("none", 0), ("quarter", 0.25)):
        path = tiny_study(project, name, num_samples=1, max_epochs=1, grace=1)
        path.write_text(path.read_text().replace("{cpu: 1}", f"{{cpu: 1, gpu: {gpu}}}"))
        files.append(str(path))
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", None)  # ensure_ray's to set
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *files],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["none"] == ["", False]
    assert out["quarter"][1] is True and out["codes"] == [0, 0]
    auto = choose_precision("auto", "cuda", native_bf16(CUDA))
    for name, device, precision in (("none", "cpu", "fp32"), ("quarter", "cuda", auto)):
        (run,) = trial_runs(project, name)
        assert run.data.tags["cephtune.state"] == "completed", run.data.tags
        assert run.data.tags["cephtune.device"] == device
        assert run.data.tags["cephtune.precision"] == precision
