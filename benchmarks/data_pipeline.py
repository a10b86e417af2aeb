"""Data pipeline: epoch time from full-size PNGs with the shared cache vs decoding every epoch.

Both variants are the same dataset, augmentation, DataLoader settings and training step; the
decoded one only swaps where ``LandmarkDataset`` takes its image from (``load_image`` on the PNG
instead of the memory-mapped cache). It times (a) the loader alone and (b) a whole training epoch,
interleaved, and reports the training epoch's data-wait fraction at the default ``num_workers``
and what one more worker process buys.

Augmentation on the device: a DataLoader worker reads the cached uint8 image and draws its
augmentation, and the batch is warped and jittered where the step runs. It compares (c) a
worker's CPU time per sample that way against warping and jittering the sample in the worker
(the pipeline before), at 512 and 1024 px, and (d) the CPU training epoch both ways
(``HostAugmenting`` is the pipeline before: the whole augmentation in ``__getitem__``).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import finish, header, interleaved, median, parser, spread, synthetic, timed
from device_augment import WORKER_SIZES, HostAugmenting, per_call, twin, worker_costs
from PIL import Image

from trainables.config import TrainConfig
from trainables.data.augment import augment, random_affine, warp_image
from trainables.data.dataset import LandmarkDataset
from trainables.data.letterbox import load_image
from trainables.data.records import verify_image
from trainables.run import Run, build, dataset_for
from trainables.train import train_epoch

FULL = {"n": 34, "width": 1935, "height": 2400, "size": 256, "batch": 4, "repeats": 5}
SMOKE = {"n": 6, "width": 400, "height": 500, "size": 64, "batch": 2, "repeats": 1}
MODEL = {"model": "hrnet", "backbone": "hrnet_w18_small"}  # the lightest registered model


class Decoded:
    """Indexes like the cache array, but decodes and letterboxes the PNG on every access."""

    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths, self.size = paths, size

    def __getitem__(self, i: int) -> np.ndarray:
        return load_image(self.paths[i], self.size)[0]


class DecodingDataset(LandmarkDataset):
    """``LandmarkDataset`` that decodes each epoch: only the image source differs."""

    def _array(self) -> Decoded:  # type: ignore[override]
        return Decoded([r.image for r in self.records], self.image_size)


def with_data(run: Run, data: LandmarkDataset, num_workers: int) -> Run:
    """A Run sharing ``run``'s model and optimiser, over ``data`` with ``run``'s loader settings."""
    old = run.loader
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=old.batch_size,
        shuffle=True,
        generator=run.shuffle,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=old.pin_memory,
        drop_last=old.drop_last,
    )
    return dataclasses.replace(run, train=data, loader=loader, epoch=0)


def loader_epoch(run: Run) -> Callable[[], None]:
    """Iterate one epoch of the loader, no model; each call is the next epoch's draws."""
    epochs = itertools.count(1)

    def once() -> None:
        epoch = next(epochs)
        run.train.set_epoch(epoch)
        run.shuffle.manual_seed(epoch)
        for _ in run.loader:
            pass

    return once


def training_epoch(run: Run, waits: list[float]) -> Callable[[], None]:
    """One ``train_epoch``; records its data-wait fraction."""

    def once() -> None:
        run.epoch += 1
        waits.append(train_epoch(run)["data_wait_frac"])

    return once


def row(name: str, a: list[float], b: list[float]) -> str:
    return f"{name:<26}{spread(a):>24}{spread(b):>24}{median(b) / median(a):>9.1f}x"


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    p = SMOKE if args.smoke else FULL
    repeats = args.repeats or p["repeats"]
    header("data pipeline: shared cache vs decoding each epoch")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cephtune-bench-", dir=args.workdir) as scratch:
        cache = Path(scratch) / "cache"  # fresh every run, so the build below is a cold build
        os.environ["CEPHTUNE_CACHE_DIR"] = str(cache)
        start = time.perf_counter()
        data = synthetic(args.workdir or Path(scratch), p["n"], p["width"], p["height"])
        made = time.perf_counter() - start
        cfg = TrainConfig(
            data_dir=str(data),
            cache_dir=str(cache),
            image_size=p["size"],
            batch_size=p["batch"],
            epochs=1,
            **MODEL,
        )
        default_workers = cfg.workers(cuda=torch.cuda.is_available())
        start = time.perf_counter()
        n = len(dataset_for(cfg, cfg.train_on, augment=cfg.augment))
        built = time.perf_counter() - start
        print(
            f"data: {n} train PNGs of {p['width']} x {p['height']} px -> {p['size']} px, "
            f"batch {p['batch']}, {MODEL['model']}/{MODEL['backbone']}, "
            f"num_workers={default_workers} (default), num_threads={cfg.num_threads}, "
            f"augment on; {repeats} interleaved repeats"
        )
        print(f"data generated in {made:.1f} s; one-off cache build {built:.2f} s ({n} images)")

        run = build(cfg)
        cached = run
        decoded = with_data(run, twin(DecodingDataset, run.train, cfg), default_workers)
        workers = min(4, max(1, len(os.sched_getaffinity(0)) - 1))
        pooled = with_data(run, run.train, workers)
        host = with_data(run, twin(HostAugmenting, run.train, cfg), default_workers)

        # Per-sample costs, to see what limits each ratio.
        image = np.array(run.train._array()[0])
        path = run.train.records[0].image
        matrix = random_affine(run.train.augment, p["size"], np.random.default_rng(0))
        unit = image.astype(np.float32) / 255.0
        rng = np.random.default_rng(0)
        costs = interleaved(
            {
                "decode + letterbox (load_image)": per_call(lambda: load_image(path, p["size"]), 3),
                "start's image check (verify_image)": per_call(lambda: verify_image(path), 3),
                "  PNG checksums only (PIL verify)": per_call(lambda: checksums(path), 3),
                "augment (warp + intensity)": per_call(
                    lambda: augment(image, run.train.coords[0], run.train.augment, rng), 20
                ),
                "  of which warp_image": per_call(lambda: warp_image(unit, matrix), 20),
                "cached sample (__getitem__)": per_call(lambda: run.train[0], 20),
                "decoded sample (__getitem__)": per_call(lambda: decoded.train[0], 3),
            },
            repeats,
        )

        for fn in (loader_epoch(cached), loader_epoch(decoded)):
            fn()  # warm the page cache and the allocator
        loader = interleaved(
            {"cached": timed(loader_epoch(cached)), "decoded": timed(loader_epoch(decoded))},
            repeats,
        )

        waits: dict[str, list[float]] = {"cached": [], "decoded": [], "pooled": [], "host": []}
        variants = {"cached": cached, "decoded": decoded, "pooled": pooled, "host": host}
        for r in variants.values():
            training_epoch(r, [])()  # warm-up: first-step allocation, worker start-up
            r.epoch = 0
        train = interleaved(
            {name: timed(training_epoch(r, waits[name])) for name, r in variants.items()},
            repeats,
        )
        worker = worker_costs(path, run.train.augment, repeats, 3 if args.smoke else 10)

    print()
    print("per sample (ms), median [min-max]:")
    for name, values in costs.items():
        print(f"  {name:<34}{spread([v * 1e3 for v in values]):>26}")
    print()
    print(f"{'epoch time (s)':<26}{'cached':>24}{'decoded':>24}{'ratio':>10}")
    print(row("loader only", loader["cached"], loader["decoded"]))
    print(row("training epoch", train["cached"], train["decoded"]))
    wait = median(waits["cached"])
    print(
        f"data_wait_frac at num_workers={default_workers}: cached {wait:.3f}, "
        f"decoded {median(waits['decoded']):.3f}"
    )
    pooled_gain = median(train["cached"]) / median(train["pooled"])
    print(
        f"cached training epoch with num_workers={workers}: {spread(train['pooled'])} s, "
        f"{pooled_gain:.2f}x of num_workers={default_workers}; "
        f"data_wait_frac {median(waits['pooled']):.3f}"
    )

    cached_sample = median(train["cached"]) / n
    gap = (median(loader["decoded"]) - median(loader["cached"])) / n
    print()
    print(
        f"limits: a cached training sample costs ~{cached_sample * 1e3:.0f} ms here, almost all "
        f"of it the CPU model step, and decoding adds ~{gap * 1e3:.0f} ms, so the training-epoch "
        f"ratio can only be ~1 + {gap * 1e3:.0f}/{cached_sample * 1e3:.0f} = "
        f"{1 + gap / cached_sample:.2f}x on this machine; it tends to the loader-only ratio as "
        "the step gets short (a GPU). The loader-only ratio is (decode + augment) / augment."
    )
    print()
    print("augmentation on the device: a worker's CPU time per sample (ms), and apply's")
    for size in WORKER_SIZES:
        before, now, applied = (worker[f"{k}_{size}"] * 1e3 for k in ("before", "now", "apply"))
        print(
            f"  {size:>4} px: warp + jitter in the worker {before:8.2f}, draws only {now:6.3f} "
            f"({before / now:5.1f}x less); apply, per sample of a batch of 4, here: {applied:.2f}"
        )
    host_vs_device = median(train["host"]) / median(train["cached"])
    print(
        f"CPU training epoch, augmentation in the worker / in the step: {host_vs_device:.3f} "
        f"({spread(train['host'])} s vs {spread(train['cached'])} s)"
    )
    finish(
        worker_aug_512=worker["before_512"] / worker["now_512"],
        worker_aug_1024=worker["before_1024"] / worker["now_1024"],
        cpu_epoch_host_vs_device=host_vs_device,
        cache_speedup=median(train["decoded"]) / median(train["cached"]),
        loader_speedup=median(loader["decoded"]) / median(loader["cached"]),
        data_wait_frac=wait,
        workers_speedup=pooled_gain,
        verify_vs_checksums=median(costs["start's image check (verify_image)"])
        / median(costs["  PNG checksums only (PIL verify)"]),
    )


def checksums(path: Path) -> None:
    """What the start's image check was: a PNG's chunk checksums, no decode."""
    with Image.open(path) as im:
        im.verify()


if __name__ == "__main__":
    main()
