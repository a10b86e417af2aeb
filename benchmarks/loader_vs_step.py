"""Can the loader feed the step? A trial's loader samples/s against its training step's, at
256, 512 and 1024 px, on the GPU (``make gpu-check``) or, slowly, here.

    python benchmarks/loader_vs_step.py                 # CUDA if present, else the CPU
    python benchmarks/loader_vs_step.py --cpus 4        # a trial's CPUs (default: min(8, cores))

At each size the product's run is built (``trainables.run.build``: the cache, the default
workers, which are the trial's CPUs less one on CUDA, pinned memory) for HRNet-W32 at batch 8
on CUDA (hrnet_w18_small at batch 2 on a CPU) with AMP where ``auto`` picks it. The loader's
rate is its samples/s over an epoch of the train split after an untimed one (workers started),
nothing consuming the batches: the most it can deliver. The step's rate is samples/s of
``train_step`` on batches already on the device, their augmentation applied there
(``augment.apply``, as a trial's step does). ``loader_vs_step_PX`` >= 1: the step never waits
for data at that size; below 1 the GPU idles for the rest.
"""

from __future__ import annotations

import gc
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import finish, header, median, parser, synthetic  # noqa: E402

FULL = {"cuda": (256, 512, 1024), "cpu": (128, 256)}
SMOKE = {"cuda": (256, 512), "cpu": (64,)}
MODEL = {"cuda": ("hrnet_w32", 8), "cpu": ("hrnet_w18_small", 2)}


def rates(data: Path, work: Path, size: int, device: str, cpus: int, n: int) -> tuple[float, float]:
    """(loader samples/s, step samples/s) at ``size`` px."""
    import torch

    from trainables.config import TrainConfig
    from trainables.losses import create_loss
    from trainables.run import build
    from trainables.train import train_step

    backbone, batch = MODEL[device]
    cfg = TrainConfig.from_dict(
        {
            "data_dir": str(data),
            "cache_dir": str(work / "cache"),
            "model": "hrnet",
            "backbone": backbone,
            "image_size": size,
            "batch_size": batch,
            "warmup_epochs": 0,
            "num_threads": cpus,
        }
    )
    run = build(cfg, device)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def epoch() -> tuple[list, float]:
        start = time.perf_counter()
        batches = list(run.loader)
        return batches, time.perf_counter() - start

    batches, _ = epoch()  # the cache is built, the workers start
    batches, seconds = epoch()
    loader = sum(len(b[0]) for b in batches) / seconds
    loss_fn = create_loss(cfg)
    on_device = [(images.to(device), coords.to(device), draws.to(device))
                 for images, coords, _, draws in batches[:4]]  # fmt: skip

    def steps(n: int) -> float:
        sync()
        start = time.perf_counter()
        for images, coords, draws in itertools.islice(itertools.cycle(on_device), n):
            inputs = run.precision.batch(run.train.images(images, draws))
            train_step(run, loss_fn, inputs, coords)
        sync()
        return time.perf_counter() - start

    steps(2)  # cudnn.benchmark's kernel trials
    step = n * batch / median([steps(n) for _ in range(3)])
    return loader, step


def main() -> None:
    import torch

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if present")
    p.add_argument("--cpus", type=int, help="a trial's CPUs (default: min(8, cores))")
    p.add_argument("--seeds", default="0", help="unused: nothing here is drawn")
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each figure as it comes (make gpu-check)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # A smoke run on a CPU shares the machine with the test suite: one thread, or the threads
    # spin against each other (README, CPU threads).
    cpus = args.cpus or (
        1 if args.smoke and device == "cpu" else min(8, len(os.sched_getaffinity(0)))
    )
    backbone, batch = MODEL[device]
    header(f"a trial's loader vs its step on {device}: {backbone}, batch {batch}, {cpus} CPUs")
    work = args.workdir or Path("/tmp/cephtune-loader-vs-step")
    work.mkdir(parents=True, exist_ok=True)
    # Twice the simulated 386 x 480 device: 1024 px letterboxes up from 960, as it would from
    # a 1935 x 2400 scan down; the cache holds the letterboxed image either way.
    data = synthetic(work, 24 if args.smoke else 96, 772, 960, 0)
    steps = 2 if args.smoke else 20 if device == "cuda" else 3
    figures = {}
    for size in (SMOKE if args.smoke else FULL)[device]:
        loader, step = rates(data, work, size, device, cpus, steps)
        gc.collect()  # the size's run, before the next one's
        if device == "cuda":
            torch.cuda.empty_cache()
        figures[f"loader_vs_step_{size}"] = loader / step
        fed = "fed" if loader >= step else f"the step waits {1 - loader / step:.0%} of the time"
        print(f"{size:5} px: loader {loader:8.1f} samples/s, step {step:8.1f} samples/s: {fed}")
    finish(**figures)


if __name__ == "__main__":
    main()
