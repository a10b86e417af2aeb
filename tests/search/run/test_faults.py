"""Injected faults: a crash must cost nothing that already finished.

Every test runs a real study (Ray Tune, Optuna sqlite storage, MLflow sqlite store) on tiny
synthetic data and breaks something while it runs: the driver (SIGKILL, Ctrl-C), a trial's
worker process (SIGKILL), the preprocessing cache (deleted), the Optuna storage (locked by
another writer). Trials that raise or whose loss goes NaN are in
``test_study_semantics.py::test_raising_and_nan_trials_fail_with_reasons_and_the_study_goes_on``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.cli import main
from search.records.trials import FAIL_REASON, INTERRUPTED, MLFLOW_RUN_ID
from tests.helpers import (
    REPO,
    TINY_SPACE,
    check_records,
    mlflow_url,
    optuna_study,
    tiny_study,
    trial_runs,
)

pytestmark = pytest.mark.slow


def query(db: Path, sql: str) -> int:
    """One number from the Optuna sqlite file, read without Optuna (0 before its tables exist)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as con:
        try:
            return con.execute(sql).fetchone()[0]
        except sqlite3.OperationalError:  # tables not created yet
            return 0


def finished_count(db: Path) -> int:
    return query(db, "SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED', 'FAIL')")


def reported(db: Path, number: int) -> int:
    """How many epochs trial ``number`` has reported."""
    return query(
        db,
        "SELECT COUNT(*) FROM trial_intermediate_values v JOIN trials t USING (trial_id) "
        f"WHERE t.number = {number}",
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Saboteur(threading.Thread):
    """Runs ``act`` beside a study in this process; its failure fails the test."""

    def __init__(self, act: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.act, self.error = act, None

    def run(self) -> None:
        try:
            self.act()
        except BaseException as e:  # noqa: BLE001 - reported by check()
            self.error = e

    def check(self) -> None:
        self.join(timeout=60)
        if self.error is not None:
            raise self.error


def start_while(act: Callable[[], None], study_file: Path) -> None:
    """``search.py start`` in this process while ``act`` breaks something beside it."""
    saboteur = Saboteur(act)
    saboteur.start()
    assert main(["start", str(study_file)]) == 0
    saboteur.check()


def assert_consistent(project: Path, name: str, num_samples: int) -> optuna.Study:
    """``check_records`` on the project's default stores; the study, for more checks."""
    study = optuna_study(project, name)
    check_records(study, trial_runs(project, name), num_samples, mlflow_url(project))
    return study


def driver(project: Path, cache_dir: Path, *args: str) -> subprocess.Popen:
    """``search.py`` as a user runs it, in its own process group (as a terminal job is); its
    output goes to ``driver.out`` and ``driver.err`` (a pipe nobody reads would block it)."""
    env = {**os.environ, "CEPHTUNE_CACHE_DIR": str(cache_dir)}
    env.pop("RAY_ADDRESS", None)
    with open(project / "driver.out", "w") as out, open(project / "driver.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, str(REPO / "search.py"), *args],
            cwd=project,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def test_driver_killed_mid_study_resumes_to_exact_counts(project, ray_cluster, cache_dir):
    study_file = tiny_study(project, "crash", num_samples=4, max_epochs=3, grace=1, seed=1)
    # Ray's experiment where the study file says (relative: to the study file's folder)
    study_file.write_text(study_file.read_text() + "experiment_path: ray-experiments\n")
    run = driver(project, cache_dir, "start", str(study_file))
    db = project / "studies" / "optuna.db"
    try:
        wait_for(lambda: finished_count(db) >= 1 or run.poll() is not None, "a finished trial")
        assert run.poll() is None, "the study ended before it could be interrupted"
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the driver and every Ray process it started
        run.wait()

    assert main(["resume", "crash"]) == 0
    study = assert_consistent(project, "crash", 4)
    done = [t for t in study.trials if t.user_attrs.get(FAIL_REASON) != INTERRUPTED]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done)
    assert study.user_attrs["spec"]["experiment_path"] == str(project / "ray-experiments")
    experiments = project / "ray-experiments" / "crash"
    assert (experiments / "ray").is_dir() and any(experiments.glob("ray*/trial_*"))
    assert not (project / "studies" / "crash" / "ray").exists()


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
    first = next(
        r for r in trial_runs(project, "gone") if r.data.tags["cephtune.optuna_trial"] == "0"
    )
    history = MlflowClient(mlflow_url(project)).get_metric_history(
        first.info.run_id, "iterations_since_restore"
    )
    restarts = sorted(m.step for m in history if m.value == 1)
    assert restarts[0] == 1 and len(restarts) == 2 and restarts[1] >= 4, history


def test_resume_after_a_relative_start_works_from_anywhere_but_refuses_a_changed_spec(
    project, ray_cluster, cache_dir, tmp_path_factory, capsys
):
    """Started as the README does (``start studies/NAME.yaml``, a space at ``../spaces/``),
    killed, then resumed by name from the project folder and from another folder."""
    tiny_study(project / "studies", "relative", num_samples=3, max_epochs=3, grace=1, seed=2)
    spec = project / "studies" / "relative.yaml"
    (project / "spaces").mkdir()
    (project / "studies" / "space.yaml").rename(project / "spaces" / "tiny.yaml")
    spec.write_text(spec.read_text().replace("space: space.yaml", "space: ../spaces/tiny.yaml"))
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


def test_ctrl_c_stops_cleanly_with_a_resume_hint(project, ray_cluster, cache_dir, capsys):
    study_file = tiny_study(project, "ctrlc", num_samples=3, max_epochs=3, grace=3, concurrent=1)
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

    assert main(["resume", "ctrlc"]) == 0
    study = assert_consistent(project, "ctrlc", 3)
    assert [t.state for t in study.trials if t.state != TrialState.FAIL] == [
        TrialState.COMPLETE
    ] * 3
    assert all(
        sorted(t.intermediate_values) == [1, 2, 3]
        for t in study.trials
        if t.state == TrialState.COMPLETE
    )


def trial_workers() -> list[int]:
    """Pids of the Ray actor processes running a trial now (titled ``ray::ImplicitFunc.train``;
    an idle actor Ray keeps for reuse is titled without ``.train``)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:  # not a process, or it has just ended
            continue
        if title.startswith(b"ray::ImplicitFunc.train"):
            found.append(int(entry.name))
    return found


def test_a_killed_worker_fails_its_trial_unless_a_retry_is_configured(project, ray_cluster):
    study_file = tiny_study(project, "workers", num_samples=2, max_epochs=3, grace=3, concurrent=1)
    study_file.write_text(study_file.read_text() + "max_failures: 1\n")
    db = project / "studies" / "optuna.db"
    killed: list[int] = []

    def kill_worker(after: Callable[[], bool], what: str) -> None:
        wait_for(lambda: after() and set(trial_workers()) - set(killed), what)
        victim = min(set(trial_workers()) - set(killed))
        killed.append(victim)
        os.kill(victim, signal.SIGKILL)  # as the OS's out-of-memory killer would

    def sabotage() -> None:
        kill_worker(lambda: reported(db, 0) >= 1, "trial 0's first epoch")  # retried: recovers
        kill_worker(lambda: reported(db, 1) >= 1, "trial 1's first epoch")
        kill_worker(lambda: True, "trial 1's retry")  # its one retry is spent: FAIL

    start_while(sabotage, study_file)
    study = assert_consistent(project, "workers", 2)
    first, second = study.trials
    assert first.state == TrialState.COMPLETE
    assert sorted(first.intermediate_values) == [1, 2, 3]
    assert second.state == TrialState.FAIL
    assert second.user_attrs[FAIL_REASON].startswith("worker_died")
    client = MlflowClient(mlflow_url(project))
    run = {r.data.tags["cephtune.optuna_trial"]: r for r in trial_runs(project, "workers")}["0"]
    history = [m.step for m in client.get_metric_history(run.info.run_id, "mre_mm")]
    assert history == [1, 2, 3]  # the retry's repeated epochs are not logged twice


def test_cache_folder_deleted_between_trials_is_rebuilt(project, ray_cluster, monkeypatch):
    cache = project / "cache"
    monkeypatch.setenv("CEPHTUNE_CACHE_DIR", str(cache))
    study_file = tiny_study(project, "cache", num_samples=2, max_epochs=3, grace=3, concurrent=1)
    db = project / "studies" / "optuna.db"

    def clear_cache() -> None:
        # Trial 0 holds its arrays open once it has validated; trial 1 has not started.
        wait_for(lambda: reported(db, 0) >= 1, "trial 0's first epoch")
        assert query(db, "SELECT COUNT(*) FROM trials") == 1, "trial 1 started too early"
        shutil.rmtree(cache)

    start_while(clear_cache, study_file)
    study = assert_consistent(project, "cache", 2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert len(list((cache / "synthetic").iterdir())) == 1  # the dataset, generated again
    assert list((cache / "preprocessed").glob("*.npy"))  # and its preprocessed images
    assert not list(cache.rglob("*.tmp"))


def test_storage_locked_by_another_writer_is_waited_for(project, ray_cluster):
    study_file = tiny_study(project, "locked", num_samples=2, max_epochs=3, grace=3, concurrent=1)
    db = project / "studies" / "optuna.db"

    def hold_lock() -> None:
        wait_for(lambda: reported(db, 0) >= 1, "trial 0's first epoch")
        with sqlite3.connect(db, timeout=30, isolation_level=None) as con:
            con.execute("BEGIN EXCLUSIVE")  # another writer: nobody reads or writes meanwhile
            time.sleep(8)  # longer than sqlite's default 5 s busy timeout
            con.execute("COMMIT")

    start_while(hold_lock, study_file)
    study = assert_consistent(project, "locked", 2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in study.trials)
