"""The study's early stopping in a real Ray Tune run, on trials that report scripted curves: a
rung whose ranking the next rung contradicts is widened by its probes and then stops nothing;
a rung that ranks like the next one keeps stopping trials; the decisions reach the study."""

from __future__ import annotations

import optuna
import pytest
from ray import tune

from search.run.early_stopping import PROBE_EVERY, RECORD_KEY, StudyNote, scheduler
from search.studyfiles.asha import Asha

pytestmark = pytest.mark.study
MAX_T = 8
TRIALS = 24


def scripted(config: dict) -> None:
    """A trial whose value at epoch 1 is ``first`` and from epoch 2 on ``quality`` (lower is
    better), so that epoch 1 ranks trials as the study's ``first`` says."""
    point = config["point"]
    for epoch in range(1, MAX_T + 1):
        tune.report({"mre": point["first"] if epoch == 1 else point["quality"], "t": epoch})


def run(tmp_path, misleading: bool):
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="s", storage=url)
    qualities = [(7 * i) % TRIALS for i in range(TRIALS)]  # a fixed shuffle of 0..23
    points = [
        {"quality": float(q), "first": float(TRIALS - q if misleading else q)} for q in qualities
    ]
    asha = scheduler(Asha(grace_period=1, reduction_factor=2), MAX_T, "t", StudyNote(url, "s"))
    grid = tune.Tuner(
        scripted,
        param_space={"point": tune.grid_search(points)},
        tune_config=tune.TuneConfig(
            metric="mre", mode="min", scheduler=asha, max_concurrent_trials=1, reuse_actors=True
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), verbose=0),
    ).fit()
    epochs = [int(grid[i].metrics["t"]) for i in range(len(grid))]
    note = optuna.load_study(study_name="s", storage=url).user_attrs.get(RECORD_KEY)
    return epochs, note


def test_a_rung_the_next_contradicts_is_widened_and_then_stops_no_trial(tmp_path, ray_cluster):
    epochs, note = run(tmp_path, misleading=True)
    assert note["widened"] == [1]
    assert note["probes"]["1"]["mistakes"] >= 2
    # After the widening no trial ends at epoch 1: every later one reaches rung 2 at least.
    first_widened = next(i for i, e in enumerate(epochs) if i >= 2 * PROBE_EVERY and e >= 2)
    assert all(e >= 2 for e in epochs[first_widened:])
    assert epochs.count(1) < TRIALS / 2


def test_a_rung_that_ranks_like_the_next_keeps_stopping(tmp_path, ray_cluster):
    epochs, note = run(tmp_path, misleading=False)
    assert note["widened"] == []
    assert note["probes"]["1"]["mistakes"] == 0
    assert epochs.count(1) >= TRIALS / 3  # ASHA kept stopping trials at the first rung
