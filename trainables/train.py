"""The one shared trainable: config -> data -> model -> loss -> schedule -> per-epoch metrics.

``run_training`` is the plain training function: the standalone ``train`` command, benchmarks
and tests call it with their own ``report``; ``trainables.trial.trainable`` is the Ray Tune
function trainable that every trial runs around it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainables import checkpoint, heatmap
from trainables.augment import augment_config
from trainables.config import TrainConfig
from trainables.data import LandmarkDataset, load_split
from trainables.loss import create_loss
from trainables.metrics import radial_errors, summarize
from trainables.model import create_model
from trainables.precision import Precision
from trainables.schedule import warmup_cosine_restarts
from trainables.synth import SynthSpec, ensure_dataset

NAN_CHECK_EVERY = 10  # steps between finiteness checks (each one syncs a GPU)

State = Callable[[], dict[str, Any]]
Report = Callable[[dict[str, Any], State], None]


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite: the trial stops instead of burning epochs."""

    reason = "nan_loss"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Run:
    """Everything one training run holds between epochs."""

    cfg: TrainConfig
    precision: Precision
    train: LandmarkDataset
    valid: LandmarkDataset
    loader: torch.utils.data.DataLoader
    shuffle: torch.Generator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    sigma: float
    epoch: int = 0
    best: float | None = None

    def state(self) -> dict[str, Any]:
        """A checkpoint: weights, optimiser and schedule state, and the provenance."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "best": self.best,
            **checkpoint.provenance(self.cfg.to_dict()),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best = state["epoch"], state["best"]


def ensure_data(cfg: TrainConfig) -> None:
    """Generated data whose folder is gone (its cache folder was cleared) is generated again."""
    if cfg.synthetic is not None:
        ensure_dataset(SynthSpec.from_key(cfg.synthetic), Path(cfg.data_dir))


def dataset_for(cfg: TrainConfig, split: str, augment: bool) -> LandmarkDataset:
    """One split of the configured dataset, through the shared preprocessing cache.

    ``split`` may join splits with ``+`` (``train+valid`` for a final model, ``train_on``).
    """
    ensure_data(cfg)
    records = [
        record
        for part in split.split("+")
        for record in load_split(cfg.data_dir, part, cfg.annotator, fmt=cfg.dataset_format)
    ]
    return LandmarkDataset(
        records,
        cfg.image_size,
        fmt=cfg.dataset_format,
        root=cfg.data_dir,
        split=split,
        cache_dir=cfg.cache_dir,
        augment=augment_config(cfg) if augment else None,
        seed=cfg.seed,
    )


def build(cfg: TrainConfig) -> Run:
    """Data, model, loss, optimiser and schedule for ``cfg``, seeded."""
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.num_threads)
    precision = Precision.resolve(cfg.precision)
    train = dataset_for(cfg, cfg.train_on, augment=cfg.augment)
    valid = dataset_for(cfg, "valid", augment=False)
    shuffle = torch.Generator()
    workers = cfg.workers(cuda=precision.device.type == "cuda")
    # The sampler owns the shuffle stream (re-seeded every epoch). The loader draws its workers'
    # base seed from its own generator when it creates an iterator: once, with persistent
    # workers, so from the shuffle stream a run resumed at epoch k would shuffle differently.
    loader = torch.utils.data.DataLoader(
        train,
        batch_size=cfg.batch_size,
        sampler=torch.utils.data.RandomSampler(train, generator=shuffle),
        generator=torch.Generator().manual_seed(cfg.seed),
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=precision.device.type == "cuda",
        drop_last=len(train) > cfg.batch_size,
    )
    model = precision.prepare(create_model(cfg, train.num_landmarks))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = warmup_cosine_restarts(
        optimizer, len(loader), cfg.warmup_epochs, cfg.t0_epochs, cfg.t_mult, cfg.eta_min
    )
    sigma = cfg.sigma if cfg.sigma is not None else heatmap.adaptive_sigma(cfg.image_size)
    return Run(
        cfg,
        precision,
        train,
        valid,
        loader,
        shuffle,
        model,
        optimizer,
        scheduler,
        precision.scaler(),
        sigma,
    )


def train_epoch(run: Run, on_step: Callable[[float], None] | None = None) -> dict[str, float]:
    """One pass over the train split; returns loss, throughput and the data-wait fraction."""
    model, cfg = run.model, run.cfg
    model.train()
    run.train.set_epoch(run.epoch)
    run.shuffle.manual_seed(cfg.seed * 100_003 + run.epoch)  # same order after a resume
    loss_fn = create_loss(cfg)
    side = cfg.image_size // model.stride
    total = torch.zeros((), device=run.precision.device)
    count, waited, steps = 0, 0.0, 0
    start = time.perf_counter()
    batches = iter(run.loader)
    while True:
        fetch = time.perf_counter()
        try:
            images, coords, _ = next(batches)
        except StopIteration:
            break
        waited += time.perf_counter() - fetch
        images = run.precision.batch(images)
        coords = heatmap.to_heatmap(coords.to(run.precision.device), model.stride)
        target = heatmap.encode(coords, side, side, run.sigma)
        with run.precision.autocast():
            outputs = model(images)
        # Intermediate supervision: a model may return one heatmap per stack.
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        loss = sum(loss_fn(out, target) for out in outputs) / len(outputs)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        total += loss.detach() * len(images)
        count += len(images)
        steps += 1
        if steps % NAN_CHECK_EVERY == 0 and not torch.isfinite(total):
            raise NonFiniteLoss(f"nan_loss: non-finite training loss in epoch {run.epoch}")
        if on_step is not None:
            on_step(loss.item())
    if run.precision.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    train_loss = (total / max(count, 1)).item()
    if not np.isfinite(train_loss):
        raise NonFiniteLoss(f"nan_loss: non-finite training loss in epoch {run.epoch}")
    return {
        "train_loss": train_loss,
        "samples_per_s": count / elapsed,
        "data_wait_frac": waited / elapsed,
    }


def predict(
    model: torch.nn.Module, data: LandmarkDataset, precision: Precision, batch_size: int
) -> np.ndarray:
    """Landmarks (N, K, 2) in original-image pixels for every image of ``data``."""
    model.eval()
    preds = np.zeros((len(data), data.num_landmarks, 2))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for images, _, idx in loader:
            with precision.autocast():
                out = model(precision.batch(images))
            xy = heatmap.from_heatmap(heatmap.decode(out), model.stride).cpu().numpy()
            for j, i in enumerate(idx.tolist()):
                preds[i] = data.to_original(i, xy[j])
    return preds


def errors_mm(
    model: torch.nn.Module, data: LandmarkDataset, precision: Precision, batch_size: int
) -> np.ndarray:
    """Radial errors (N, K) in mm on ``data``; NaN where a landmark is not annotated."""
    truth = np.stack([r.landmarks for r in data.records])
    sizes = np.array([r.pixel_size for r in data.records])
    return radial_errors(predict(model, data, precision, batch_size), truth, sizes)


def run_training(
    cfg: TrainConfig,
    report: Report,
    resume: dict[str, Any] | None = None,
    on_step: Callable[[float], None] | None = None,
) -> Run:
    """Train until ``cfg.epochs``; after each epoch call ``report(metrics, state)``.

    ``state`` is a thunk returning the checkpoint (a reporter saves it when
    ``should_checkpoint``). ``resume`` is a checkpoint to continue from.
    """
    run = build(cfg)
    if resume is not None:
        run.restore(resume)
    while run.epoch < cfg.epochs:
        run.epoch += 1
        metrics = train_epoch(run, on_step)
        metrics.update(summarize(errors_mm(run.model, run.valid, run.precision, cfg.batch_size)))
        metrics.update(lr=run.scheduler.get_last_lr()[0], epoch=run.epoch)
        if run.best is None or metrics["mre_mm"] < run.best:
            run.best = metrics["mre_mm"]
        report(metrics, run.state)
    return run


def should_checkpoint(cfg: TrainConfig, epoch: int) -> bool:
    """Every ``checkpoint_every`` epochs and the last one; never when it is 0."""
    every = cfg.checkpoint_every
    return every > 0 and (epoch % every == 0 or epoch == cfg.epochs)
