"""What the fault-injection tests share: a study's counts read from its sqlite storage while it
runs, a driver started as a user starts it, a saboteur thread beside an in-process study, and
the check every fault ends with (``check_records`` on the project's stores)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna

from search.cli import main
from search.records.trials import WORKER_PID
from tests.helpers import (
    REPO,
    as_a_terminal_job,
    check_records,
    mlflow_url,
    optuna_study,
    trial_runs,
)


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
            preexec_fn=as_a_terminal_job,  # Ctrl-C reaches it however the suite was started
        )


def worker_pid(db: Path, number: int) -> int:
    """The pid of the Ray worker that trial ``number`` last reported from, as the study's
    record keeps it (0 before its first report)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as con:
        try:
            row = con.execute(
                "SELECT a.value_json FROM trial_user_attributes a JOIN trials t USING (trial_id) "
                f"WHERE t.number = {number} AND a.key = '{WORKER_PID}'"
            ).fetchone()
        except sqlite3.OperationalError:  # tables not created yet
            return 0
    return int(json.loads(row[0])) if row else 0


def restarts(project: Path, name: str, number: int) -> list[int]:
    """The epochs at which trial ``number``'s training (re)started, from its MLflow history of
    Ray's ``iterations_since_restore``: ``[1]`` for a trial that ran once, ``[1, k]`` for one
    that went on at epoch ``k`` from its checkpoint of epoch ``k - 1``."""
    from mlflow.tracking import MlflowClient

    runs = trial_runs(project, name)
    (run,) = [r for r in runs if r.data.tags["cephtune.optuna_trial"] == str(number)]
    client = MlflowClient(mlflow_url(project))
    history = client.get_metric_history(run.info.run_id, "iterations_since_restore")
    return sorted(m.step for m in history if m.value == 1)
