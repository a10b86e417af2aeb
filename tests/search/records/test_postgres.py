"""PostgreSQL as the Optuna storage, on a private server (tests/postgres.py): the driver URLs
the README documents, a missing driver named in one line, and a fresh database opened by two
clients at the same moment. A whole study on PostgreSQL and an MLflow server runs in
tests/test_readme.py, from the README's own commands."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from search.records.storage import open_storage
from tests.helpers import REPO

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("driver", ["postgresql", "postgresql+psycopg", "postgresql+psycopg2"])
def test_each_documented_url_opens_and_keeps_a_study(postgres, driver):
    database = postgres.createdb(f"urls_{driver.replace('+', '_')}")
    storage = open_storage(postgres.url(database, driver))
    study = optuna.create_study(study_name="kept", storage=storage)
    study.enqueue_trial({"x": 1.0})
    again = optuna.load_study(study_name="kept", storage=postgres.url(database))
    assert [t.state.name for t in again.trials] == ["WAITING"]


def _open_at_once(url: str, barrier, errors) -> None:
    barrier.wait()
    try:
        open_storage(url)
    except Exception as e:  # reported to the test, which names it
        errors.put(f"{type(e).__name__}: {str(e).splitlines()[0]}")


def test_a_fresh_database_opened_by_two_clients_at_once(postgres):
    """Both create Optuna's tables; without a retry one of them failed with IntegrityError on
    pg_type_typname_nsp_index (seen on every one of ten tries). Two processes, as a driver and
    an optuna-dashboard would be, released by one barrier, on five fresh databases."""
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for attempt in range(5):
        url = postgres.url(postgres.createdb(f"race_{attempt}"))
        barrier = context.Barrier(2)
        clients = [
            context.Process(target=_open_at_once, args=(url, barrier, errors)) for _ in range(2)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=120)
            assert client.exitcode == 0
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []


def _cli(args: list[str], blocked: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """``search.py`` in a process where importing ``blocked`` fails, as when it is not
    installed (a ``sitecustomize`` on the path marks the module missing)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(f"import sys\nsys.modules[{blocked!r}] = None\n")
    env = {**os.environ, "PYTHONPATH": str(hooks)}
    return subprocess.run(
        [sys.executable, str(REPO / "search.py"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "blocked", "says"),
    [
        (
            "postgresql://cephtune@127.0.0.1:1/optuna",
            "psycopg",
            "the postgresql driver 'psycopg' is not installed (pip package psycopg[binary], "
            "in cephtune's postgres extra: pip install -e '.[postgres]'); postgresql:// means "
            "psycopg (v3), postgresql+psycopg2:// names psycopg2",
        ),
        (
            "postgresql+psycopg2://cephtune@127.0.0.1:1/optuna",
            "psycopg2",
            "the postgresql driver 'psycopg2' is not installed (pip package psycopg2-binary",
        ),
    ],
)
def test_a_missing_driver_is_named_in_one_line(url, blocked, says, tmp_path):
    result = _cli(["status", "any", "--storage", url], blocked, tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: --storage {url!r}: {says}")
