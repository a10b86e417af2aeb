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
from trainables.config import RESOLVED_KEYS, TrainConfig
from trainables.data import LandmarkDataset, load_split
from trainables.loss import create_loss
from trainables.metrics import radial_errors, summarize
from trainables.model import create_model
from trainables.precision import Precision
from trainables.schedule import warmup_cosine_restarts
from trainables.synth import SynthSpec, ensure_dataset

# On CUDA the loss is read back (a host-GPU sync) only every NAN_CHECK_EVERY steps: for the
# finiteness check and for ``on_step``. On CPU reading it costs nothing, so it is every step.
NAN_CHECK_EVERY = 10
# With fp16 loss scaling a run fails as ``nan_loss`` after this many non-finite step losses in
# a row (across epochs), or an epoch without a finite one. An overflow is one step that the
# GradScaler skips while it halves its scale; ten in a row means the scale fell 1024x without
# recovering, or the weights are no longer finite: a divergence, not an overflow. Without a
# scaler (fp32, bf16) nothing skips the step, so the first non-finite loss fails the run.
NAN_PATIENCE = 10
# Optimiser options that belong to the device a run trains on, not to the checkpoint it resumes.
DEVICE_OPTIONS = ("fused", "foreach", "capturable")

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
    nonfinite_streak: int = 0  # consecutive non-finite step losses, carried across epochs

    def resolved(self) -> dict[str, str]:
        """What ``precision: auto`` and the device became (``RESOLVED_KEYS``); the config only
        says what was asked."""
        values = (self.precision.name, self.precision.device.type)
        return dict(zip(RESOLVED_KEYS, values, strict=True))

    def state(self) -> dict[str, Any]:
        """A checkpoint: weights, optimiser and schedule state, and the provenance."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "best": self.best,
            **self.resolved(),
            **checkpoint.provenance(self.cfg.to_dict()),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint, which may come from another device or precision."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(device_options(state["optimizer"], self.optimizer))
        self.scheduler.load_state_dict(state["scheduler"])
        # A run without loss scaling (fp32, bf16) saved a disabled scaler's {}: an fp16 run
        # resuming it starts from the scaler's initial scale (an enabled scaler refuses {}).
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best = state["epoch"], state["best"]


def device_options(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """An optimiser state with this run's device options: ``load_state_dict`` would take the
    checkpoint's param groups whole, so a CPU checkpoint would turn a fused CUDA AdamW back
    into an unfused one (and a CUDA checkpoint ask for fused on CPU)."""
    groups = [
        {**group, **{k: own[k] for k in DEVICE_OPTIONS if k in own}}
        for group, own in zip(saved["param_groups"], optimizer.param_groups, strict=True)
    ]
    return {**saved, "param_groups": groups}


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


def build(cfg: TrainConfig, device: str | None = None) -> Run:
    """Data, model, loss, optimiser and schedule for ``cfg``, seeded, on ``device`` (default:
    CUDA when this process sees a GPU)."""
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.num_threads)
    precision = Precision.resolve(cfg.precision, device)
    cuda = precision.device.type == "cuda"
    train = dataset_for(cfg, cfg.train_on, augment=cfg.augment)
    valid = dataset_for(cfg, "valid", augment=False)
    shuffle = torch.Generator()
    workers = cfg.workers(cuda=cuda)
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
        pin_memory=cuda,
        drop_last=len(train) > cfg.batch_size,
    )
    model = precision.prepare(create_model(cfg, train.num_landmarks))
    # Fused on CUDA: one kernel, and GradScaler.step then needs no host sync to find infs.
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True if cuda else None
    )
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
    """One pass over the train split; returns loss, throughput and the data-wait fraction.

    ``train_loss`` is the mean over the steps whose loss was finite; ``nonfinite_steps``
    counts the others (fp16 overflows, which the GradScaler skips). ``on_step`` gets the
    current step's loss whenever it is read back (every step on CPU, every
    ``NAN_CHECK_EVERY`` on CUDA).
    """
    model, cfg = run.model, run.cfg
    model.train()
    run.train.set_epoch(run.epoch)
    run.shuffle.manual_seed(cfg.seed * 100_003 + run.epoch)  # same order after a resume
    loss_fn = create_loss(cfg)
    device = run.precision.device
    check_every = NAN_CHECK_EVERY if device.type == "cuda" else 1
    patience = NAN_PATIENCE if run.scaler.is_enabled() else 1
    # Accumulated on the device, so that a step needs no host sync.
    total = torch.zeros((), device=device)
    counted = torch.zeros((), device=device)
    nonfinite = torch.zeros((), dtype=torch.long, device=device)
    streak = torch.full((), run.nonfinite_streak, dtype=torch.long, device=device)
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
        value = train_step(run, loss_fn, images, coords.to(device, non_blocking=True))
        finite = torch.isfinite(value)
        total += torch.where(finite, value, 0.0) * len(images)
        counted += finite * len(images)
        nonfinite += ~finite
        streak = torch.where(finite, 0, streak + 1)
        count += len(images)
        steps += 1
        if steps % check_every == 0:
            check_finite(int(streak.item()), patience, run.epoch)
            if on_step is not None:
                on_step(value.item())
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    run.nonfinite_streak = int(streak.item())
    check_finite(run.nonfinite_streak, patience, run.epoch)
    if steps and counted.item() == 0:
        raise NonFiniteLoss(f"nan_loss: no finite training loss in epoch {run.epoch}")
    return {
        "train_loss": (total / counted.clamp(min=1)).item(),
        "nonfinite_steps": int(nonfinite.item()),
        "samples_per_s": count / elapsed,
        "data_wait_frac": waited / elapsed,
    }


def train_step(
    run: Run, loss_fn: Callable, images: torch.Tensor, coords: torch.Tensor
) -> torch.Tensor:
    """One optimisation step on a batch already on the device: targets, forward, loss, scaled
    backward, optimiser and schedule. Returns the detached loss; reads nothing back to the
    host (the GradScaler finds overflows on the device with the fused AdamW)."""
    model = run.model
    side = run.cfg.image_size // model.stride
    target = heatmap.encode(heatmap.to_heatmap(coords, model.stride), side, side, run.sigma)
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
    return loss.detach()


def check_finite(streak: int, patience: int, epoch: int) -> None:
    """Fail the run once ``patience`` step losses in a row were not finite."""
    if streak >= patience:
        steps = "a step" if streak == 1 else f"{streak} steps in a row"
        raise NonFiniteLoss(f"nan_loss: non-finite training loss for {steps} (epoch {epoch})")


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
    device: str | None = None,
) -> Run:
    """Train until ``cfg.epochs``; after each epoch call ``report(metrics, state)``.

    ``state`` is a thunk returning the checkpoint (a reporter saves it when
    ``should_checkpoint``). ``resume`` is a checkpoint to continue from, from any device or
    precision. ``device`` defaults to CUDA when this process sees a GPU; a Ray trial passes
    the one its resources give it. ``metrics`` also carry the resolved ``precision`` and
    ``device`` (text).
    """
    run = build(cfg, device)
    if resume is not None:
        run.restore(resume)
    while run.epoch < cfg.epochs:
        run.epoch += 1
        metrics = train_epoch(run, on_step)
        metrics.update(summarize(errors_mm(run.model, run.valid, run.precision, cfg.batch_size)))
        metrics.update(lr=run.scheduler.get_last_lr()[0], epoch=run.epoch, **run.resolved())
        if run.best is None or metrics["mre_mm"] < run.best:
            run.best = metrics["mre_mm"]
        report(metrics, run.state)
    return run


def should_checkpoint(cfg: TrainConfig, epoch: int) -> bool:
    """Every ``checkpoint_every`` epochs and the last one; never when it is 0."""
    every = cfg.checkpoint_every
    return every > 0 and (epoch % every == 0 or epoch == cfg.epochs)
