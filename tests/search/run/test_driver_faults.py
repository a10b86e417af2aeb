"""Injected faults of the driver: a crash must cost nothing that already finished.

Every test runs a real study (Ray Tune, Optuna sqlite storage, MLflow sqlite store) on tiny
synthetic data through ``search.py`` as a user starts it, stops its driver (SIGKILL, Ctrl-C)
and resumes it: from the README's relative path, from another folder, after Ray's saved state
went stale. Faults beside a running trial are in ``test_trial_faults.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3

import pytest
from optuna.trial import TrialState

from search.cli import main
from search.records.trials import FAIL_REASON, INTERRUPTED, MLFLOW_RUN_ID
from tests.helpers import (
    TINY_SPACE,
    tiny_study,
)
from tests.search.run.faults import (
    assert_consistent,
    driver,
    finished_count,
    reported,
    restarts,
    wait_for,
)

pytestmark = pytest.mark.study


def test_a_trial_resumes_from_the_newest_checkpoint_on_storage_whatever_ray_saved(
    project, ray_cluster, cache_dir
):
    """Ray deletes a trial's older checkpoints as it registers a new one but names the latest
    in its saved experiment only later; a driver killed in between leaves a state naming a
    checkpoint that is gone (seen when a driver's host died, tests/search/run/test_hosts.py).
    Simulated here: after the kill, the newest checkpoint of a trial is renamed and the rest
    deleted, so what Ray saved is gone whichever it names. The trial goes on from the newest
    checkpoint on storage, not from scratch and not FAIL.

    The running trial's link to its MLflow run is deleted from Optuna too: the state of a driver
    that created the run and stopped before linking it (seen when PostgreSQL went away, in
    test_hosts.py). The trial goes on in that run, not in a second one."""
    space = TINY_SPACE + "  checkpoint_every: 1\n"
    study_file = tiny_study(project, "gone", 2, max_epochs=6, grace=6, concurrent=1, space=space)
    study_file.write_text(study_file.read_text() + "experiment_path: ray-experiments\n")
    run = driver(project, cache_dir, "start", str(study_file))
    db = project / "studies" / "optuna.db"
    try:
        # Ray saves its experiment state at the latest after a trial's 2nd checkpoint; by the
        # 3rd epoch it names one of trial 0's checkpoints (earlier, it may name none, and the
        # trial would rightly start over).
        wait_for(lambda: reported(db, 0) >= 3 or run.poll() is not None, "trial 0's 3rd epoch")
        assert run.poll() is None, "the study ended before it could be interrupted"
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    moved = 0
    for trial in (project / "ray-experiments" / "gone").glob("ray*/trial_*"):
        kept = sorted(trial.glob("checkpoint_*"))
        if kept:
            *older, newest = kept
            newest.rename(trial / f"checkpoint_{int(newest.name.split('_')[1]) + 100:06d}")
            for folder in older:
                shutil.rmtree(folder)
            moved += 1
    assert moved >= 1, "no trial had saved a checkpoint"
    with sqlite3.connect(db) as con:
        unlinked = con.execute(
            "DELETE FROM trial_user_attributes WHERE key = ? AND trial_id IN "
            "(SELECT trial_id FROM trials WHERE state = 'RUNNING')",
            (MLFLOW_RUN_ID,),
        ).rowcount
    assert unlinked == 1

    assert main(["resume", "gone"]) == 0
    study = assert_consistent(project, "gone", 2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    again = restarts(project, "gone", 0)  # from the checkpoint of epoch 3 or later
    assert again[0] == 1 and len(again) == 2 and again[1] >= 4, again


def test_resume_after_a_relative_start_works_from_anywhere_but_refuses_a_changed_spec(
    project, ray_cluster, cache_dir, tmp_path_factory, capsys
):
    """Started as the README does (``start studies/NAME.yaml``, a space at ``../spaces/``),
    its Ray experiment where the study file says, killed (SIGKILL: the driver and every Ray
    process it started), then resumed by name from the project folder and from another folder,
    to exact counts. The README's own kill and resume run in tests/test_readme.py."""
    tiny_study(project / "studies", "relative", 3, max_epochs=3, grace=1, concurrent=2, seed=2)
    spec = project / "studies" / "relative.yaml"
    (project / "spaces").mkdir()
    (project / "studies" / "space.yaml").rename(project / "spaces" / "tiny.yaml")
    text = spec.read_text().replace("space: space.yaml", "space: ../spaces/tiny.yaml")
    spec.write_text(text + "experiment_path: ray-experiments\n")  # relative to the study file
    run = driver(project, cache_dir, "start", "studies/relative.yaml")
    db = project / "studies" / "optuna.db"
    try:
        wait_for(lambda: finished_count(db) >= 1 or run.poll() is not None, "a finished trial")
        assert run.poll() is None, "the study ended before it could be interrupted"
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()

    original = spec.read_text()
    spec.write_text(original.replace("max_epochs: 3", "max_epochs: 4"))
    assert main(["resume", "relative"]) == 2  # a real change is still refused
    spec.write_text(original)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    os.chdir(elsewhere)
    capsys.readouterr()
    assert main(["resume", "relative", "--storage", f"sqlite:///{db}"]) == 0
    study = assert_consistent(project, "relative", 3)
    assert list(elsewhere.iterdir()) == []  # the study's state stayed in its project folder
    # The summary's counts add up to num_samples; replaced trials are named apart.
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "trials finished" in x]
    parts = re.search(r"(\d+) trials finished \((.*)\)", line)
    assert int(parts[1]) == 3 == sum(int(p.split()[1]) for p in parts[2].split(", "))
    replaced = [t.number for t in study.trials if t.user_attrs.get(FAIL_REASON) == INTERRUPTED]
    if replaced:
        assert f"{len(replaced)} more (#{', #'.join(map(str, replaced))})" in out
    assert study.metric_names == ["mre_mm"]  # optuna-dashboard names the objective
    done = [t for t in study.trials if t.user_attrs.get(FAIL_REASON) != INTERRUPTED]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done)
    experiments = project / "studies" / "ray-experiments"
    assert study.user_attrs["spec"]["experiment_path"] == str(experiments)
    assert (experiments / "relative" / "ray").is_dir()
    assert any((experiments / "relative").glob("ray*/trial_*"))
    assert not (project / "studies" / "relative" / "ray").exists()


def test_ctrl_c_stops_cleanly_with_a_resume_hint(project, ray_cluster, cache_dir, capsys):
    space = TINY_SPACE + "  checkpoint_every: 1\n"
    study_file = tiny_study(project, "ctrlc", 3, max_epochs=3, grace=3, concurrent=1, space=space)
    run = driver(project, cache_dir, "start", str(study_file))
    db = project / "studies" / "optuna.db"
    try:
        wait_for(lambda: reported(db, 0) >= 1 or run.poll() is not None, "trial 0's first epoch")
        assert run.poll() is None, "the study ended before it could be interrupted"
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole process group
        run.wait(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    err = (project / "driver.err").read_text()
    assert run.returncode == 130
    assert "Traceback" not in err and "Tuner.restore(" not in err  # one way to resume
    hints = [line for line in err.splitlines() if "python search.py resume ctrlc" in line]
    assert len(hints) == 1 and err.rstrip().endswith(hints[0])

    capsys.readouterr()
    assert main(["resume", "ctrlc", "--num-samples", "5"]) == 2  # adding trials waits
    err = capsys.readouterr().err
    assert "continue it first with `python search.py resume ctrlc`" in err
    assert err.count("\n") == 1
    assert main(["resume", "ctrlc"]) == 0
    study = assert_consistent(project, "ctrlc", 3)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in study.trials)
    # Trial 0, stopped by Ctrl-C, went on from its checkpoint of the epoch it had reported.
    again = restarts(project, "ctrlc", 0)
    assert len(again) == 2 and again[1] >= 2, again
