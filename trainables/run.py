"""One training run's state and how it is built from a config: seeded data, model, optimiser,
schedule and loss scaler on the run's device, and its checkpoint (save and restore).

``trainables.train`` runs the epochs; ``build`` is where everything they use comes from.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainables import checkpoint
from trainables.artifacts import BEST, EPOCH, MICRO_BATCH, WEIGHTS
from trainables.config import RESOLVED_KEYS, TrainConfig
from trainables.data.augment import augment_config
from trainables.data.dataset import LandmarkDataset
from trainables.data.formats import load_split
from trainables.data.synth import SynthSpec, ensure_dataset
from trainables.models import create_model
from trainables.precision import Precision
from trainables.schedule import warmup_cosine_restarts
from trainables.shape import Size, sigma_for

# Optimiser options that belong to the device a run trains on, not to the checkpoint it resumes.
DEVICE_OPTIONS = ("fused", "foreach", "capturable")


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
    size: Size  # the input size of the current epoch (progressive_stages, then image_size)
    epoch: int = 0
    best: float | None = None  # the best valid value of the checkpoint policy's metric so far
    nonfinite_streak: int = 0  # consecutive non-finite step losses, carried across epochs
    # The samples one forward and backward take: ``batch_size`` until a step runs out of memory,
    # then halved (``trainables.train``) with the gradient accumulated over the batch's parts.
    micro_batch: int = 0

    def __post_init__(self) -> None:
        self.micro_batch = self.micro_batch or self.cfg.batch_size

    @property
    def accumulation(self) -> int:
        """Forward and backward passes per optimiser step (the batch over the micro-batch)."""
        return -(-self.cfg.batch_size // self.micro_batch)

    def resolved(self) -> dict[str, str]:
        """What ``precision: auto`` and the device became (``RESOLVED_KEYS``); the config only
        says what was asked."""
        values = (self.precision.name, self.precision.device.type)
        return dict(zip(RESOLVED_KEYS, values, strict=True))

    def state(self) -> dict[str, Any]:
        """A checkpoint: weights, optimiser and schedule state, and the provenance."""
        return {
            WEIGHTS: self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            EPOCH: self.epoch,
            BEST: self.best,
            MICRO_BATCH: self.micro_batch,
            **self.resolved(),
            **checkpoint.provenance(self.cfg.to_dict()),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint, which may come from another device or precision."""
        self.model.load_state_dict(state[WEIGHTS])
        self.optimizer.load_state_dict(device_options(state["optimizer"], self.optimizer))
        self.scheduler.load_state_dict(state["scheduler"])
        # A run without loss scaling (fp32, bf16) saved a disabled scaler's {}: an fp16 run
        # resuming it starts from the scaler's initial scale (an enabled scaler refuses {}).
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best = state[EPOCH], state[BEST]
        # A run that had to shrink its micro-batch resumes with it (older checkpoints: none).
        self.micro_batch = min(self.cfg.batch_size, state.get(MICRO_BATCH) or self.cfg.batch_size)

    def resize(self, size: Size) -> None:
        """Train and validate at ``size`` from now on (a progressive stage's size): the data and
        loader at that size, sigma for it; the model, optimiser and schedule carry over."""
        if size == self.size:
            return
        cuda = self.precision.device.type == "cuda"
        self.train = dataset_for(self.cfg, self.cfg.train_on, self.cfg.augment, size)
        self.valid = dataset_for(self.cfg, "valid", False, size)
        self.loader = make_loader(self.cfg, self.train, self.shuffle, cuda)
        self.sigma = sigma_for(self.cfg.sigma, size, self.model.stride)
        self.size = size


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


def dataset_for(
    cfg: TrainConfig, split: str, augment: bool, size: Size | None = None
) -> LandmarkDataset:
    """One split of the configured dataset at ``size`` (default ``cfg.image_size``), through
    the shared preprocessing cache.

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
        cfg.image_size if size is None else size,
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
    size = cfg.size_at(1)
    train = dataset_for(cfg, cfg.train_on, augment=cfg.augment, size=size)
    valid = dataset_for(cfg, "valid", augment=False, size=size)
    shuffle = torch.Generator()
    loader = make_loader(cfg, train, shuffle, cuda)
    model = precision.prepare(create_model(cfg, train.num_landmarks))
    if cfg.compile:  # in place: the module, its state_dict's keys and its attributes stay
        if not cuda:  # inductor's C++ toolchain probe warns that a CPU machine has no CUDA
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        # A fresh start for each run, as in a new process: a reused Ray actor's earlier trials
        # would otherwise count towards dynamo's recompile limit (8 per code object), past
        # which the model's forward quietly runs eager.
        torch._dynamo.reset()
        model.compile()
    # Fused on CUDA: one kernel, and GradScaler.step then needs no host sync to find infs.
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True if cuda else None
    )
    scheduler = warmup_cosine_restarts(
        optimizer, len(loader), cfg.warmup_epochs, cfg.t0_epochs, cfg.t_mult, cfg.eta_min
    )
    sigma = sigma_for(cfg.sigma, size, model.stride)
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
        size,
    )


def make_loader(
    cfg: TrainConfig, train: LandmarkDataset, shuffle: torch.Generator, cuda: bool
) -> torch.utils.data.DataLoader:
    """The train loader. The sampler owns the shuffle stream (re-seeded every epoch). The loader
    draws its workers' base seed from its own generator when it creates an iterator: once, with
    persistent workers, so from the shuffle stream a run resumed at epoch k would shuffle
    differently."""
    workers = cfg.workers(cuda=cuda)
    return torch.utils.data.DataLoader(
        train,
        batch_size=cfg.batch_size,
        sampler=torch.utils.data.RandomSampler(train, generator=shuffle),
        generator=torch.Generator().manual_seed(cfg.seed),
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=cuda,
        drop_last=len(train) > cfg.batch_size,
    )
