"""A trial re-pointed at the checkpoints on storage is restored with the result it reported
there, on real Ray trial objects over real checkpoint folders."""

from __future__ import annotations

from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial

from search.run.recovery import repoint
from search.run.searcher import epoch_of
from trainables.trial import fill_checkpoint


def reported(epoch: int) -> dict:
    return {"epoch": epoch, "mre_mm": 3.0 - epoch, "sdr_2mm": 0.25 * epoch, "device": "cpu"}


def a_trial(tmp_path, epochs: int) -> Trial:
    storage = StorageContext(
        storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name="trial_1"
    )
    trial = Trial("trainable", config={"lr": 1e-3}, stub=True, storage=storage)
    for epoch in range(1, epochs + 1):
        folder = tmp_path / "exp" / "trial_1" / f"checkpoint_{epoch - 1:06d}"
        folder.mkdir(parents=True)
        fill_checkpoint(folder, {"epoch": epoch}, reported(epoch))
    return trial


def test_a_trial_restored_from_its_last_epoch_ends_with_that_epochs_metric(tmp_path):
    """Killed after its last epoch's checkpoint but before Ray's saved state named it: Ray
    restores the trial, which ends at once, and hands the checkpoint's metrics on as its final
    result. Without the metric in them, Ray refused the result ("did not include the specified
    metric(s) mre_mm") and the record would have failed a finished trial as no_result."""
    trial = a_trial(tmp_path, 3)
    trial.run_metadata.last_result = {"training_iteration": 3, "trial_id": trial.trial_id}
    assert repoint(trial)
    result = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    assert result.checkpoint.path.endswith("checkpoint_000002")
    assert result.metrics["training_iteration"] == 3
    epoch = epoch_of(result.metrics)
    assert epoch.step == 3 and epoch.values["mre_mm"] == 0.0 and epoch.values["device"] == "cpu"


def test_only_epochs_ray_saw_reported_are_restored_from(tmp_path):
    trial = a_trial(tmp_path, 3)
    trial.run_metadata.last_result = {"training_iteration": 2, "trial_id": trial.trial_id}
    assert repoint(trial)
    result = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    assert result.metrics["epoch"] == 2 and result.metrics["mre_mm"] == 1.0
