"""Augmentation on the device, for ``data_pipeline.py``: the pipeline before it (each sample
warped and jittered where it is loaded) as a dataset, and a loader worker's CPU time per sample
both ways."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import interleaved, median

from trainables.config import TrainConfig
from trainables.data.augment import AugmentConfig, apply, augment, draw
from trainables.data.dataset import LandmarkDataset
from trainables.data.letterbox import load_image

WORKER_SIZES = (512, 1024)  # where a worker's warp was the bottleneck of a GPU trial


def per_call(fn: Callable[[], object], calls: int) -> Callable[[], float]:
    """Mean seconds per call over ``calls`` calls."""

    def run() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls

    return run


class HostAugmenting(LandmarkDataset):
    """The pipeline before augmentation moved to the device: each sample warped and jittered in
    ``__getitem__`` (a worker) and sent as float32; the step gets it as is."""

    def __getitem__(self, i: int):  # type: ignore[override]
        image, coords, i, row = super().__getitem__(i)
        out = apply(image[None], row[None], self.augment)[0]
        return out, coords, i, row

    def images(self, images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        return images


def twin(kind: type[LandmarkDataset], data: LandmarkDataset, cfg: TrainConfig):
    """``data`` again as the dataset class ``kind`` (a variant that differs in one method):
    the same records, size, split, cache, augmentation and seed."""
    return kind(
        data.records,
        data.image_size,
        fmt=cfg.dataset_format,
        root=cfg.data_dir,
        split=cfg.train_on,
        cache_dir=cfg.cache_dir,
        augment=data.augment,
        seed=data.seed,
    )


def worker_costs(path: Path, cfg: AugmentConfig, repeats: int, calls: int) -> dict[str, float]:
    """Per size, a worker's seconds per sample: augmenting the sample itself (before) and only
    drawing its augmentation (now), interleaved; and what ``apply`` then costs a sample of a
    batch of 4 in this process (on a GPU it is the GPU's)."""
    out: dict[str, float] = {}
    for size in WORKER_SIZES:
        image = load_image(path, size)[0]
        coords = np.full((29, 2), size / 2.0)
        rng = np.random.default_rng(0)
        hw = (image.shape[-1], image.shape[-2])

        def now(image=image, coords=coords, rng=rng, hw=hw):
            draw(cfg, coords, hw, rng)
            return torch.from_numpy(np.array(image))

        rows = torch.from_numpy(np.stack([draw(cfg, coords, hw, rng)[0] for _ in range(4)]))
        batch = torch.from_numpy(np.stack([image] * 4))[:, None]
        costs = interleaved(
            {
                "before": per_call(lambda i=image, c=coords, r=rng: augment(i, c, cfg, r), calls),
                "now": per_call(now, calls),
                "apply": per_call(lambda b=batch, r=rows: apply(b, r, cfg), calls),
            },
            repeats,
        )
        for name, values in costs.items():
            out[f"{name}_{size}"] = median(values) / (4 if name == "apply" else 1)
    return out
