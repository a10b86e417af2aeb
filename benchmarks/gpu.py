"""GPU: mixed precision vs fp32 steps, and fractional-GPU trial packing. Skips without CUDA.

1. AMP vs fp32: steady-state samples/s of the trainable's own ``train_step`` (HRNet-W18, 256 px,
   batch 12, channels_last, fused AdamW) over >= 50 steps per timed block, on batches already on
   the GPU (the loader is not timed), after an untimed warm-up in which ``cudnn.benchmark``
   picks its kernels; fp32, fp16 (+ GradScaler) and, on a GPU with native bf16, bf16 blocks
   alternate. The headline is what ``precision: auto`` picks here vs fp32. Target >= 1.8x.
   (fp32 convolutions use TF32 on Ampere and later, PyTorch's default.)
2. Packing at 128 px: the same study through `search.py start` with 4 trials at 0.25 GPU each
   (4 concurrent) vs 1 trial per GPU (1 concurrent), both arms with the same CPUs in all (a
   quarter trial gets a quarter of the whole trial's). Each trial runs >= 50 steady-state steps
   (epochs after its first); the figure is GPU throughput, the summed samples/s of the concurrent
   trials vs the lone trial's, from the per-epoch ``samples_per_s`` in MLflow. The trials-per-
   second of the whole study (start-up included) is printed beside it. Target >= 2.5x.
   ``data_wait_frac`` near 0 says the trials were bound by the GPU, not by their loaders.

Memory is released between the parts; the studies run in their own processes.
"""

from __future__ import annotations

import gc
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import finish, header, interleaved, median, parser, skip, spread, synthetic

REPO = Path(__file__).resolve().parents[1]
FULL = {"steps": 60, "warmup": 15, "images": 120, "trial_images": 240, "epochs": 4, "repeats": 3}
SMOKE = {"steps": 5, "warmup": 2, "images": 24, "trial_images": 24, "epochs": 2, "repeats": 1}

SPACE = """\
params:
  lr: {type: float, low: 2.0e-4, high: 1.0e-3, log: true}
fixed:
  model: hrnet
  backbone: hrnet_w18_small
  image_size: 128
  batch_size: 8
  warmup_epochs: 0
  checkpoint_every: 0
"""

STUDY = """\
name: {name}
dataset: {{format: synthetic, n: {n}, size: [386, 480], seed: 0}}
space: space.yaml
num_samples: {trials}
max_epochs: {epochs}
asha: false
resources: {{cpu: {cpu}, gpu: {gpu}}}
max_concurrent_trials: {concurrent}
seed: 0
"""


def amp_rates(work: Path, size: dict, repeats: int) -> dict[str, list[float]]:
    """samples/s per precision, ``size["steps"]`` steps per timed block, blocks alternating."""
    import torch

    from trainables.config import TrainConfig
    from trainables.losses import create_loss
    from trainables.precision import native_bf16
    from trainables.run import build
    from trainables.train import train_step

    root = synthetic(work, size["images"], 386, 480)
    names = ["fp16", "fp32"]
    if native_bf16(torch.device("cuda")):
        names.insert(0, "bf16")
    blocks = {}
    for name in names:
        cfg = TrainConfig.from_dict(
            {
                "data_dir": str(root),
                "cache_dir": str(work / "cache"),
                "backbone": "hrnet_w18",
                "image_size": 256,
                "batch_size": 12,
                "precision": name,
                "num_workers": 0,
            }
        )
        run = build(cfg, "cuda")
        loss_fn = create_loss(cfg)
        batches = [
            (run.precision.batch(run.train.images(images.cuda(), draws)), coords.cuda())
            for images, coords, _, draws in itertools.islice(run.loader, 8)
        ]

        def block(steps: int, run=run, loss_fn=loss_fn, batches=batches) -> float:
            torch.cuda.synchronize()
            start = time.perf_counter()
            for images, coords in itertools.islice(itertools.cycle(batches), steps):
                train_step(run, loss_fn, images, coords)
            torch.cuda.synchronize()
            return steps * run.cfg.batch_size / (time.perf_counter() - start)

        block(size["warmup"])  # cudnn.benchmark tries its kernels here
        blocks[name] = block
    try:
        return interleaved({n: lambda n=n: blocks[n](size["steps"]) for n in names}, repeats)
    finally:
        blocks.clear()
        gc.collect()
        torch.cuda.empty_cache()


def packing(project: Path, name: str, size: dict, gpu: float, concurrent: int) -> dict:
    """One `search.py start`: trials/s of its span and the steady-state GPU throughput."""
    import optuna
    from mlflow.tracking import MlflowClient

    (project / "space.yaml").write_text(SPACE)
    path = project / f"{name}.yaml"
    # The same CPUs in all for both arms (the driver and Ray keep two cores); Ray takes
    # fractions of a CPU where there are few.
    cpu = max(2, len(os.sched_getaffinity(0)) - 2) / concurrent
    text = STUDY.format(
        name=name,
        n=size["trial_images"],
        trials=4,
        epochs=size["epochs"],
        cpu=cpu,
        gpu=gpu,
        concurrent=concurrent,
    )
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, str(REPO / "search.py"), "start", str(path), "--fresh"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"search.py start failed ({done.returncode}):\n{done.stderr[-3000:]}")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{project}/studies/optuna.db")
    failed = [t.user_attrs.get("fail_reason") for t in study.trials if t.state.name == "FAIL"]
    if failed:
        sys.exit(f"{name}: trials failed: {failed}")
    first = min(t.datetime_start for t in study.trials)
    last = max(t.datetime_complete for t in study.trials)
    client = MlflowClient(f"sqlite:///{project}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    rates, waits, devices = [], [], set()
    for run in client.search_runs([experiment.experiment_id]):
        if run.data.tags.get("cephtune.role") == "study":
            continue
        devices.add(run.data.tags.get("cephtune.device"))
        history = {
            key: [m.value for m in client.get_metric_history(run.info.run_id, key) if m.step > 1]
            for key in ("samples_per_s", "data_wait_frac")
        }
        rates.append(median(history["samples_per_s"]))
        waits.append(median(history["data_wait_frac"]))
    if devices != {"cuda"}:
        sys.exit(f"{name}: trials ran on {sorted(map(str, devices))}, not only on cuda")
    # Concurrent trials add up; a lone trial's rate is the GPU's.
    throughput = sum(rates) if concurrent > 1 else median(rates)
    return {
        "trials_per_s": len(study.trials) / (last - first).total_seconds(),
        "samples_per_s": throughput,
        "data_wait_frac": median(waits),
        "cpu": cpu,
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    header("GPU: mixed precision vs fp32, fractional GPU trials")
    import torch

    if not torch.cuda.is_available():
        skip("CUDA is not available on this machine: the GPU benchmark needs one")
        return
    size = SMOKE if args.smoke else FULL
    repeats = args.repeats or size["repeats"]
    from trainables.precision import Precision

    auto = Precision.resolve("auto", torch.device("cuda")).name
    with tempfile.TemporaryDirectory(prefix="cephtune-bench-") as tmp:
        work = args.workdir or Path(tmp)
        os.environ["CEPHTUNE_CACHE_DIR"] = str(work / "cache")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        amp = amp_rates(work, size, repeats)
        arms = {"quarter": (0.25, 4), "whole": (1, 1)}
        runs: dict[str, list[dict]] = {arm: [] for arm in arms}
        for _ in range(repeats):
            for arm, (gpu, concurrent) in arms.items():
                runs[arm].append(packing(work, arm, size, gpu, concurrent))
    fp32 = median(amp["fp32"])
    gpu_name = torch.cuda.get_device_name(0)
    print(f"HRNet-W18, 256 px, batch 12, samples/s over {size['steps']} steps on {gpu_name}")
    for name, rates in amp.items():
        label = {"fp16": "fp16 AMP", "bf16": "bf16 AMP", "fp32": "fp32 (TF32)"}[name]
        print(f"  {label:<12} {spread(rates)}   x{median(rates) / fp32:.2f}")
    amp_ratio = median(amp[auto]) / fp32
    print(f"  auto = {auto}: x{amp_ratio:.2f} vs fp32   target >= 1.8")

    def figure(arm: str, key: str) -> list[float]:
        return [r[key] for r in runs[arm]]

    throughput = median(figure("quarter", "samples_per_s")) / median(
        figure("whole", "samples_per_s")
    )
    span = median(figure("quarter", "trials_per_s")) / median(figure("whole", "trials_per_s"))
    print(
        f"4 trials x {size['epochs']} epochs at 128 px, hrnet_w18_small, batch 8; "
        f"{runs['quarter'][0]['cpu']:g} vs {runs['whole'][0]['cpu']:g} CPUs a trial"
    )
    for arm, label in (("quarter", "4 x 0.25 GPU"), ("whole", "1 x 1 GPU   ")):
        print(
            f"  {label}  GPU samples/s {spread(figure(arm, 'samples_per_s'))}  "
            f"trials/s {spread(figure(arm, 'trials_per_s'))}  "
            f"data wait {median(figure(arm, 'data_wait_frac')):.1%}"
        )
    print(f"  packing: x{throughput:.2f} GPU throughput (target >= 2.5), x{span:.2f} trials/s")
    finish(
        amp_vs_fp32=amp_ratio,
        quarter_gpu_throughput_vs_whole=throughput,
        quarter_trials_per_s_vs_whole=span,
    )


if __name__ == "__main__":
    main()
