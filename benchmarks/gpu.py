"""GPU: AMP vs fp32 step throughput, and fractional-GPU trial packing. Skips without CUDA.

1. AMP (fp16 autocast + GradScaler, channels_last) vs fp32: steady-state samples/s of the
   trainable's ``train_epoch`` for HRNet-W18 at 256 px, epochs alternating. Target >= 1.8x.
2. Trial throughput at 128 px: the same study run through `search.py start` with 4 trials at
   0.25 GPU each (4 concurrent) vs 1 trial per GPU (1 concurrent); trials per second of the
   trial span (first trial start -> last trial end in the Optuna storage). Target >= 2.5x.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import finish, header, interleaved, median, parser, skip, spread, synthetic

REPO = Path(__file__).resolve().parents[1]

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


def amp_speedup(work: Path, smoke: bool, repeats: int) -> tuple[list[float], list[float]]:
    from trainables.config import TrainConfig
    from trainables.train import build, train_epoch

    root = synthetic(work, 16 if smoke else 120, 386, 480)
    runs = {}
    for precision in ("fp16", "fp32"):
        cfg = TrainConfig.from_dict(
            {
                "data_dir": str(root),
                "cache_dir": str(work / "cache"),
                "backbone": "hrnet_w18",
                "image_size": 256,
                "batch_size": 12,
                "precision": precision,
                "num_workers": 4,
                "num_threads": 4,
            }
        )
        runs[precision] = build(cfg)
        train_epoch(runs[precision])  # warm-up: cudnn.benchmark picks its kernels here

    def epoch(precision: str):
        def once() -> float:
            runs[precision].epoch += 1
            return train_epoch(runs[precision])["samples_per_s"]

        return once

    rates = interleaved({p: epoch(p) for p in runs}, repeats)
    return rates["fp16"], rates["fp32"]


def trial_rate(project: Path, name: str, trials: int, gpu: float, concurrent: int) -> float:
    """Trials per second of trial span for one `search.py start` on a scratch project."""
    import optuna

    (project / "space.yaml").write_text(SPACE)
    path = project / f"{name}.yaml"
    cpu = max(1, len(os.sched_getaffinity(0)) // 4 - 1)
    text = STUDY.format(
        name=name, n=60, trials=trials, epochs=2, cpu=cpu, gpu=gpu, concurrent=concurrent
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
    first = min(t.datetime_start for t in study.trials)
    last = max(t.datetime_complete for t in study.trials)
    return len(study.trials) / (last - first).total_seconds()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    header("GPU: AMP vs fp32, fractional GPU trials")
    import torch

    if not torch.cuda.is_available():
        skip("CUDA is not available on this machine: the GPU benchmark needs one")
        return
    repeats = args.repeats or (1 if args.smoke else 5)
    with tempfile.TemporaryDirectory(prefix="cephtune-bench-") as tmp:
        work = args.workdir or Path(tmp)
        os.environ["CEPHTUNE_CACHE_DIR"] = str(work / "cache")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        amp, fp32 = amp_speedup(work, args.smoke, repeats)
        trials = 4 if args.smoke else 12
        rates = interleaved(
            {
                "quarter": lambda: trial_rate(work, "quarter", trials, 0.25, 4),
                "whole": lambda: trial_rate(work, "whole", trials, 1, 1),
            },
            repeats,
        )
        shared, whole = rates["quarter"], rates["whole"]
    speedup = median(amp) / median(fp32)
    packing = median(shared) / median(whole)
    print(f"HRNet-W18, 256 px, batch 12, samples/s on {torch.cuda.get_device_name(0)}")
    print(f"  fp16 AMP   {spread(amp)}")
    print(f"  fp32       {spread(fp32)}")
    print(f"  speedup    {speedup:.2f}   target >= 1.8")
    print(f"trials/s at 128 px, {trials} trials x 2 epochs")
    print(f"  4 x 0.25 GPU  {spread(shared)}")
    print(f"  1 x 1 GPU     {spread(whole)}")
    print(f"  ratio         {packing:.2f}   target >= 2.5")
    finish(amp_vs_fp32=speedup, quarter_gpu_trials_vs_whole=packing)


if __name__ == "__main__":
    main()
