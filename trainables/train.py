"""The one shared trainable: config -> data -> model -> loss -> schedule -> per-epoch metrics.

``run_training`` is the plain training function (benchmarks and tests call it directly with
their own ``report``); ``trainable`` is the Ray Tune function trainable that every trial runs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from trainables import heatmap
from trainables.config import TrainConfig
from trainables.data import LandmarkDataset, load_split
from trainables.landmarks import AARIZ_SYMBOLS
from trainables.loss import create_loss
from trainables.metrics import radial_errors, summarize
from trainables.model import create_model
from trainables.schedule import warmup_cosine

Report = Callable[[dict[str, Any]], None]


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite: the trial stops instead of burning epochs."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(
    model: torch.nn.Module, data: LandmarkDataset, device: torch.device, batch_size: int, autocast
) -> dict[str, float]:
    """MRE/SDR on ``data`` with predictions mapped back to original pixels."""
    model.eval()
    stride = model.stride
    preds = np.zeros((len(data), len(AARIZ_SYMBOLS), 2))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for images, _, idx in loader:
            with autocast():
                out = model(_to_device(images, device))
            xy = heatmap.from_heatmap(heatmap.decode(out), stride).cpu().numpy()
            for j, i in enumerate(idx.tolist()):
                preds[i] = data.to_original(i, xy[j])
    truth = np.stack([r.landmarks for r in data.records])
    sizes = np.array([r.pixel_size for r in data.records])
    return summarize(radial_errors(preds, truth, sizes))


def _to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def run_training(cfg: TrainConfig, report: Report) -> None:
    """Train for ``cfg.epochs`` epochs, calling ``report`` with the metrics after each one."""
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.num_threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train = LandmarkDataset(load_split(cfg.data_dir, "train", cfg.annotator), cfg.image_size)
    valid = LandmarkDataset(load_split(cfg.data_dir, "valid", cfg.annotator), cfg.image_size)

    model = create_model(cfg, len(AARIZ_SYMBOLS)).to(device)
    loss_fn = create_loss(cfg)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)

    def autocast():
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(
        train,
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=generator,
        drop_last=len(train) > cfg.batch_size,
    )
    steps = len(loader)
    scheduler = warmup_cosine(optimizer, cfg.warmup_epochs * steps, cfg.epochs * steps, cfg.eta_min)
    sigma = cfg.sigma if cfg.sigma is not None else heatmap.adaptive_sigma(cfg.image_size)
    side = cfg.image_size // model.stride

    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, count = 0.0, 0
        for images, coords, _ in loader:
            images = _to_device(images, device)
            target = heatmap.encode(
                heatmap.to_heatmap(coords.to(device), model.stride), side, side, sigma
            )
            with autocast():
                loss = loss_fn(model(images), target)
            if not math.isfinite(loss.item()):
                raise NonFiniteLoss(f"non-finite training loss at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += loss.item() * len(images)
            count += len(images)
        metrics = evaluate(model, valid, device, cfg.batch_size, autocast)
        metrics.update(train_loss=total / count, lr=scheduler.get_last_lr()[0], epoch=epoch)
        report(metrics)


def trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one trial, one ``tune.report`` per epoch."""
    from ray import tune

    run_training(TrainConfig.from_dict(config), tune.report)
