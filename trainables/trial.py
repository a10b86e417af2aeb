"""The Ray Tune function trainable that every trial runs: ``run_training`` plus reports.

This module imports nothing heavy at the top: the driver only needs a reference to
``trainable`` to pickle, so it never pays for importing torch and timm; the trial's worker
process imports them on its first trial (and keeps them: Ray reuses the actor).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

CHECKPOINT_NAME = "checkpoint.pt"


def trainable(config: dict[str, Any]) -> None:
    """One ``tune.report`` per epoch, with a checkpoint every ``checkpoint_every`` epochs."""
    import logging

    from ray import tune

    from trainables import checkpoint
    from trainables.config import TrainConfig
    from trainables.train import State, run_training, should_checkpoint

    # Ray logs every checkpoint a trial saves at INFO, and forwards it to the user's terminal.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
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
            checkpoint.save(Path(folder) / CHECKPOINT_NAME, state())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    run_training(cfg, report, resume)
