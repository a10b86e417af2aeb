"""Trainable efficiency: steady-state samples/s of the trainable vs a minimal PyTorch loop.

Both train the same model (``create_model`` on the same config) with the same loss, optimiser,
batch size and images. The trainable runs ``train_epoch`` on a ``build(cfg)`` run: DataLoader
over the shared cache, augmentation, heatmap targets encoded per batch, the warmup/SGDR
schedule, the GradScaler path and the finiteness checks. The minimal loop is what one would
write by hand: the letterboxed images and their target heatmaps prepared once as tensors, then
forward, loss, backward, step. Both first run an untimed warm-up epoch; then their epochs
alternate and the medians of samples/s are compared.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
from common import finish, header, interleaved, median, parser, spread, synthetic

from trainables.config import TrainConfig
from trainables.eval import heatmap
from trainables.losses import create_loss
from trainables.models import create_model
from trainables.run import Run, build
from trainables.train import train_epoch

FULL = {"n": 60, "size": 128, "batch": 8, "repeats": 5}
SMOKE = {"n": 10, "size": 64, "batch": 2, "repeats": 1}


class MinimalLoop:
    """A hand-written loop: prepared tensors, forward, loss, (scaled) backward, AdamW step."""

    def __init__(self, run: Run) -> None:
        cfg = run.cfg
        torch.manual_seed(cfg.seed)
        self.model = run.precision.prepare(create_model(cfg, run.train.num_landmarks))
        self.precision = run.precision
        cuda = run.precision.device.type == "cuda"
        # The usual AMP recipe, as the trainable runs it: fused AdamW on CUDA, and a GradScaler
        # wherever the precision needs one (fp16), so the baseline is a fair one on a GPU.
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            fused=True if cuda else None,
        )
        self.scaler = run.precision.scaler()
        self.loss_fn = create_loss(cfg)
        data = run.train
        items = [data[i] for i in range(len(data))]
        loaded, draws = torch.stack([x[0] for x in items]), torch.stack([x[3] for x in items])
        images = data.images(loaded, draws)  # augmented once
        coords = torch.from_numpy(data.coords)
        side = cfg.image_size.width // self.model.stride
        targets = heatmap.encode(
            heatmap.to_heatmap(coords, self.model.stride), side, side, run.sigma
        )
        steps = len(run.loader)
        b = cfg.batch_size
        self.batches = [
            (
                run.precision.batch(images[i * b : (i + 1) * b]),
                targets[i * b : (i + 1) * b].to(run.precision.device),
            )
            for i in range(steps)
        ]

    def epoch(self) -> float:
        """One pass; samples/s."""
        self.model.train()
        start = time.perf_counter()
        count = 0
        for images, target in self.batches:
            with self.precision.autocast():
                out = self.model(images)
            loss = self.loss_fn(out, target)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            count += len(images)
        if self.precision.device.type == "cuda":
            torch.cuda.synchronize()
        return count / (time.perf_counter() - start)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    size = SMOKE if args.smoke else FULL
    repeats = args.repeats or size["repeats"]
    with tempfile.TemporaryDirectory(prefix="cephtune-bench-") as tmp:
        work = args.workdir or Path(tmp)
        root = synthetic(work, size["n"], 386, 480)
        threads = len(os.sched_getaffinity(0))
        cfg = TrainConfig.from_dict(
            {
                "data_dir": str(root),
                "cache_dir": str(work / "cache"),
                "model": "hrnet",
                "backbone": "hrnet_w18_small",
                "image_size": size["size"],
                "batch_size": size["batch"],
                "warmup_epochs": 1,
                "epochs": 100,
                "num_threads": threads,
            }
        )
        header(
            f"trainable efficiency: hrnet_w18_small, {cfg.image_size} px, batch {cfg.batch_size}, "
            f"{cfg.loss}, {threads} threads, num_workers={cfg.workers(torch.cuda.is_available())} "
            "(default), "
            f"{repeats} repeats"
        )
        run = build(cfg)
        minimal = MinimalLoop(run)
        print(
            f"{len(run.train)} train images, {len(run.loader)} steps per epoch; "
            f"precision {run.precision.name} on {run.precision.device.type}"
        )

        def trainable_epoch() -> float:
            run.epoch += 1
            return train_epoch(run)["samples_per_s"]

        trainable_epoch()  # warm-up: allocator, kernels, the first augmentation draws
        minimal.epoch()
        rates = interleaved({"trainable": trainable_epoch, "minimal": minimal.epoch}, repeats)
    ratio = median(rates["trainable"]) / median(rates["minimal"])
    print("samples/s, median [min-max]")
    print(f"  trainable (train_epoch)   {spread(rates['trainable'])}")
    print(f"  minimal hand-written loop {spread(rates['minimal'])}")
    print(f"  ratio                     {ratio:.3f}   target >= 0.95")
    finish(trainable_vs_minimal=ratio)


if __name__ == "__main__":
    main()
