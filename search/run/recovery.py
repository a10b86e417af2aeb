"""A trial resumes from the newest checkpoint its folder holds, even when Ray's saved
experiment names one that is gone.

Ray deletes a trial's older checkpoints (``CheckpointConfig(num_to_keep)``) the moment it
registers a new one, but writes the experiment state that names the latest only at the end of
its next step, and copies it to the experiment folder after that. A driver killed in between
(its host lost, SIGKILL) leaves a state naming a deleted checkpoint, and on ``resume`` Ray fails
that trial with "Could not recover from checkpoint as it does not exist on storage anymore"
(seen in ``tests/search/run/test_hosts.py``, where the driver's host dies mid-study). The
reverse happens on Ctrl-C: Ray's last snapshot can hold a trial's last result but not yet the
checkpoint saved with it, and the trial would start over. Before a pending trial starts,
``NewestCheckpoint`` re-points such a trial at the checkpoints that are on storage, newest
last (for a trial Ray knows no checkpoint of, only those of epochs it has seen reported, so no
epoch goes unrecorded), each with the metrics the trial reported at its epoch: Ray restores a
trial's last result from them, and one restored at its last epoch ends at once with that result
as its final one. It reaches into Ray's per-trial checkpoint bookkeeping, which has no public
setter (Ray 2.60).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow.fs
from ray.train import Checkpoint
from ray.train._internal.session import _TrainingResult
from ray.tune import Callback
from ray.tune.experiment import Trial

from trainables.trial import EPOCH_NAME

CHECKPOINT_PREFIX = "checkpoint_"
ITERATION = "training_iteration"  # Ray's count of reports: the epoch, for our trainable


class NewestCheckpoint(Callback):
    """Re-point pending trials whose latest checkpoint is gone (see the module docstring)."""

    def __init__(self) -> None:
        self.looked: set[str] = set()  # trials without a known checkpoint, looked at once

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        for trial in trials:
            if trial.status != Trial.PENDING:
                continue
            if trial.checkpoint is not None:
                repoint(trial)
            elif trial.trial_id not in self.looked and trial.last_result.get(ITERATION):
                self.looked.add(trial.trial_id)
                repoint(trial)


def repoint(trial: Trial) -> bool:
    """Register the checkpoints on storage (oldest first) when the latest Ray knows is gone, or
    when it knows none of a trial that has reported (then only epochs up to its last reported
    one); whether it did. A folder without the epoch file (not our trainable's) is skipped."""
    latest = trial.checkpoint
    fs = trial.storage.storage_filesystem if latest is None else latest.filesystem
    if latest is not None and fs.get_file_info(latest.path).type != pyarrow.fs.FileType.NotFound:
        return False
    upto = trial.last_result.get(ITERATION, 0) if latest is None else float("inf")
    folder = trial.storage.trial_fs_path
    found = []
    for info in fs.get_file_info(pyarrow.fs.FileSelector(folder, allow_not_found=True)):
        if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(
            CHECKPOINT_PREFIX
        ):
            try:
                with fs.open_input_stream(f"{info.path}/{EPOCH_NAME}") as stream:
                    held = json.loads(stream.read())
                epoch, metrics = int(held["epoch"]), dict(held.get("metrics", {}))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if epoch <= upto:
                found.append((epoch, info.path, metrics))
    if not found:
        return False
    manager = trial.run_metadata.checkpoint_manager
    manager._checkpoint_results = []  # what the saved state listed is not what storage holds
    for epoch, path, metrics in sorted(found, key=lambda f: f[0]):
        # Ray makes these metrics the trial's last result when it restores it; a trial whose
        # checkpoint is its last epoch ends at once, and Ray hands that result, as the trial's
        # final one, to the searcher, the scheduler and the record, which need its metric.
        checkpoint = Checkpoint(path, filesystem=fs)
        manager.register_checkpoint(
            _TrainingResult(checkpoint=checkpoint, metrics={**metrics, ITERATION: epoch})
        )
    return True
