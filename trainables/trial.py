"""The Ray Tune function trainable that every trial runs: ``run_training`` plus reports.

This module imports nothing heavy at the top: the driver only needs a reference to
``trainable`` to pickle, so it never pays for importing torch and timm; the trial's worker
process imports them on its first trial (and keeps them: Ray reuses the actor).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

CHECKPOINT_NAME = "checkpoint.pt"
# Beside it: the epoch it holds and the metrics reported with it, which the driver reads without
# torch when it must re-point a trial at a checkpoint (``search.run.recovery``): Ray restores a
# trial's last result from its checkpoint's metrics. Ray's training_iteration is that epoch.
EPOCH_NAME = "epoch.json"


def trainable(config: dict[str, Any]) -> None:
    """One ``tune.report`` per epoch, with a checkpoint every ``checkpoint_every`` epochs, on
    the device its resources give it (``trainables.device``)."""
    import logging

    import ray
    import torch
    from ray import tune

    from trainables import checkpoint
    from trainables.config import TrainConfig
    from trainables.device import gpu_share, trial_device
    from trainables.train import State, run_training, should_checkpoint

    # Ray logs every checkpoint a trial saves at INFO, and forwards it to the user's terminal.
    logging.getLogger("ray.train").setLevel(logging.WARNING)

    share = tune.get_context().get_trial_resources().required_resources.get("GPU", 0.0)
    device = trial_device(share, ray.get_gpu_ids(), torch.cuda.is_available())

    resume = None
    found = tune.get_checkpoint()
    if found is not None:
        with found.as_directory() as folder:
            resume = checkpoint.load(Path(folder) / CHECKPOINT_NAME)

    cfg = TrainConfig.from_dict(config)

    def report(metrics: dict[str, Any], state: State) -> None:
        if not should_checkpoint(cfg, metrics["epoch"]):
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            fill_checkpoint(Path(folder), state(), metrics)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    with gpu_share(device, share):
        run_training(cfg, report, resume, device=device)


def fill_checkpoint(folder: Path, state: dict[str, Any], metrics: dict[str, Any]) -> None:
    """What a trial's checkpoint folder holds: the training state, and beside it the epoch and
    the metrics reported with it (``EPOCH_NAME``)."""
    from trainables import checkpoint

    checkpoint.save(folder / CHECKPOINT_NAME, state)
    held = {"epoch": metrics["epoch"], "metrics": metrics}
    (folder / EPOCH_NAME).write_text(json.dumps(held, default=float))
