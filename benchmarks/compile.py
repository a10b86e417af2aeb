"""torch.compile vs eager: steady-state samples/s of the trainable's own ``train_step`` and what
the compile costs once, for a final run (``promote --compile``, the trainable key ``compile``).

    python benchmarks/compile.py                  # on the GPU: HRNet-W18 at 512 px, batch 8
    python benchmarks/compile.py --device cpu     # here: hrnet_w18_small at 128 px (minutes)

Each arm builds the product's run (``trainables.run.build``, ``compile: true`` or not) on the
same synthetic batches already on the device (the loader is not timed). The compiled arm's
first step holds the compile; its time less an eager step's is ``compile_s``. Then blocks of
steps alternate between the arms (a, b, a, b, ...) after an untimed warm-up, and the figure is
the ratio of their median samples/s; the steps that repay the compile (``compile_s`` over the
time a compiled step saves) are printed beside it. Without
CUDA the default device skips: compiling on a CPU is minutes, so the suite's smoke run leaves
it to ``--device cpu``.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import finish, header, interleaved, median, parser, skip, spread, synthetic  # noqa: E402

FULL = {
    "cuda": {"backbone": "hrnet_w18", "size": 512, "batch": 8, "steps": 30, "warmup": 5},
    "cpu": {"backbone": "hrnet_w18_small", "size": 128, "batch": 4, "steps": 4, "warmup": 2},
}
SMOKE = {
    "cuda": {"backbone": "hrnet_w18_small", "size": 256, "batch": 8, "steps": 5, "warmup": 2},
    "cpu": {"backbone": "hrnet_w18_small", "size": 64, "batch": 2, "steps": 2, "warmup": 1},
}


def arm(work: Path, data: Path, case: dict, device: str, compiled: bool):
    """A built run and its batches on the device, and its first step's seconds."""
    import torch

    from trainables.config import TrainConfig
    from trainables.losses import create_loss
    from trainables.run import build
    from trainables.train import train_step

    cfg = TrainConfig.from_dict(
        {
            "data_dir": str(data),
            "cache_dir": str(work / "cache"),
            "model": "hrnet",
            "backbone": case["backbone"],
            "image_size": case["size"],
            "batch_size": case["batch"],
            "warmup_epochs": 0,
            "num_workers": 0,
            "num_threads": torch.get_num_threads(),
            "compile": compiled,
        }
    )
    run = build(cfg, device)
    loss_fn = create_loss(cfg)
    batches = [
        (run.precision.batch(run.train.images(images.to(device), draws)), coords.to(device))
        for images, coords, _, draws in itertools.islice(run.loader, 4)
    ]

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def steps(n: int) -> float:
        """Seconds of ``n`` steps."""
        sync()
        start = time.perf_counter()
        for images, coords in itertools.islice(itertools.cycle(batches), n):
            train_step(run, loss_fn, images, coords)
        sync()
        return time.perf_counter() - start

    first = steps(1)  # the compiled arm compiles its forward and backward here
    steps(case["warmup"])  # cudnn.benchmark's kernel trials; inductor's autotuning
    return steps, first


def main() -> None:
    import torch

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda", help="where to measure")
    p.add_argument("--seeds", default="0", help="unused: nothing here is drawn")
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each figure as it comes (make gpu-check)
    header(f"torch.compile vs eager train steps on {args.device}")
    if args.device == "cuda" and not torch.cuda.is_available():
        skip("CUDA is not available on this machine (--device cpu compiles for the CPU: minutes)")
        return
    case = (SMOKE if args.smoke else FULL)[args.device]
    repeats = args.repeats or (1 if args.smoke else 3)
    work = args.workdir or Path("/tmp/cephtune-compile")
    work.mkdir(parents=True, exist_ok=True)
    data = synthetic(work, 24, 386, 480, 0)
    eager, eager_first = arm(work, data, case, args.device, compiled=False)
    print(f"eager: first step {eager_first:.1f} s")
    compiled, compiled_first = arm(work, data, case, args.device, compiled=True)
    n = case["steps"]
    arms = {"eager": eager, "compiled": compiled}
    rates = interleaved({k: lambda s=s: n * case["batch"] / s(n) for k, s in arms.items()}, repeats)
    step_eager = case["batch"] / median(rates["eager"])
    step_compiled = case["batch"] / median(rates["compiled"])
    compile_s = max(0.0, compiled_first - step_eager)
    print(f"compiled: first step {compiled_first:.1f} s (the compile {compile_s:.1f} s)")
    saved = step_eager - step_compiled
    breakeven = compile_s / saved if saved > 0 else 0.0
    label = f"{case['backbone']}, {case['size']} px, batch {case['batch']}, {n} steps a block"
    print(f"{label}: samples/s eager {spread(rates['eager'])}, compiled", spread(rates["compiled"]))
    ratio = median(rates["compiled"]) / median(rates["eager"])
    repaid = f"after {breakeven:.0f} steps" if saved > 0 else "never: no step is faster"
    print(f"compiled / eager x{ratio:.2f}; the compile is repaid {repaid}")
    finish(compiled_vs_eager=ratio, compile_s=compile_s)


if __name__ == "__main__":
    main()
