"""The servers a user looks at a study with, on one real finished study.

optuna-dashboard (``search.py dashboard``) is opened in a headless Chromium, and what the page
shows is checked against the Optuna storage; the MLflow server's REST API is checked against
the study's lineage (a parent run, one nested run per trial). The servers and the browser are
driven as tests/servers.py says.
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from search.cli import main
from search.records.trials import STATE_TAGS
from tests.helpers import REPO, free_port, isolate, mlflow_url, optuna_url, tiny_study
from tests.servers import (
    READY_S,
    Server,
    artifacts_dir,
    browser,
    chromium_page,
    rest,
    shown_tolerance,
)

pytestmark = pytest.mark.cluster

STUDY = "servers"
PAGE_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, cache_dir, ray_cluster):
    """A finished tiny study of 3 completed trials in a scratch project folder."""
    root = tmp_path_factory.mktemp("servers")
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, root, cache_dir)
        # grace 2 = max_epochs: no trial is pruned, so the report has its plots of 3 trials
        study_file = tiny_study(root, name=STUDY, num_samples=3, max_epochs=2, grace=2)
        assert main(["start", str(study_file)]) == 0
        storage = optuna_url(root)
        yield root, optuna.load_study(study_name=STUDY, storage=storage)


@pytest.fixture(scope="module")
def servers(finished_study):
    """optuna-dashboard and the MLflow server on the study, both started at once."""
    root, _ = finished_study
    dashboard = Server(
        "dashboard",
        # no --host, no --storage: the defaults (loopback, studies/optuna.db in the project)
        [sys.executable, str(REPO / "search.py"), "dashboard", "--port", str(port := free_port())],
        root,
        port,
        "/api/studies",
    )
    started = [dashboard]
    try:
        mlflow_port = free_port()
        mlflow = Server(
            "mlflow",
            [
                *(sys.executable, "-m", "mlflow", "server"),
                *("--backend-store-uri", mlflow_url(root)),
                *("--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"),
                "--no-serve-artifacts",
            ],
            root,
            mlflow_port,
            "/health",
            # without its job runner (a process and six huey consumers, unused here), the
            # server starts in half the time
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        started.append(mlflow)
        yield {"dashboard": dashboard, "mlflow": mlflow}
    finally:
        for server in started:
            server.stop()


def test_dashboard_in_a_browser_shows_the_storage_trials_and_best_value(
    finished_study, servers, tmp_path
):
    _, study = finished_study
    trials = study.get_trials(deepcopy=False)
    best = study.best_trial
    dashboard = servers["dashboard"]
    playwright = browser()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    dashboard.wait_ready()
    shots = artifacts_dir(tmp_path)

    with playwright as p:
        with chromium_page(p, tmp_path, PAGE_TIMEOUT_MS) as page:
            # The study list (/dashboard): a card linking to the study's page.
            page.goto(dashboard.url + "/")
            page.get_by_role("link", name=re.compile(rf"\b{STUDY}\b")).click()
            page.wait_for_url(re.compile(r"/dashboard/studies/\d+$"))
            study_url = page.url

            # The study's page: a "Best Trial (number=N)" card with the value under it.
            title = page.get_by_text(re.compile(r"^Best Trial \(number=\d+\)$"))
            title.wait_for()
            try:  # the plots, for the screenshot only
                page.wait_for_load_state("networkidle", timeout=15_000)
            except PlaywrightTimeout:
                pass
            shot = shots / "optuna-dashboard-study.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
            card = title.locator("xpath=..").inner_text()
            found = re.search(r"Best Trial \(number=(\d+)\)\s+(\S+)", card)
            assert found, card
            assert int(found[1]) == best.number
            shown = found[2]
            tolerance = shown_tolerance(shown) + math.ulp(best.value)
            assert float(shown) == pytest.approx(best.value, abs=tolerance), card

            # The trials list: "N Trials", one item per trial with its state, the best marked.
            page.goto(study_url + "/trials")
            header = page.get_by_text(re.compile(r"^\d+ Trials?$"))
            header.wait_for()
            # The page shows "0 Trials" until its first fetch of the storage answers (seen on a
            # loaded 2-core machine): wait for a count other than 0 before reading it.
            page.get_by_text(re.compile(r"^[1-9]\d* Trials?$")).wait_for()
            shot = shots / "optuna-dashboard-trials.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
            assert int(header.inner_text().split()[0]) == len(trials)
            items = page.locator("li").filter(has=page.get_by_text(re.compile(r"^Trial \d+$")))
            listed = {}
            for text in items.all_inner_texts():
                first, *chips = [line.strip() for line in text.splitlines() if line.strip()]
                listed[int(first.split()[1])] = chips
            assert sorted(listed) == [t.number for t in trials]
            for trial in trials:
                chips = [c.lower() for c in listed[trial.number]]
                assert trial.state.name.lower() in chips, (trial.number, chips)
                assert ("best trial" in chips) == (trial.number == best.number), chips


def test_the_report_in_a_browser_shows_its_charts(finished_study, tmp_path):
    """``search.py report`` as a user runs it, the page opened from its file in Chromium: every
    chart (curves, parallel coordinates, slices, importances) decodes, and a screenshot of the
    whole page is kept with the test's artifacts."""
    root, study = finished_study
    done = subprocess.run(
        [sys.executable, str(REPO / "search.py"), "report", STUDY],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr and "Warning" not in done.stderr, done.stderr
    path = root / "studies" / STUDY / "report" / "report.html"
    assert str(path) in done.stdout
    playwright = browser()
    with playwright as p:
        with chromium_page(p, tmp_path, PAGE_TIMEOUT_MS) as page:
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            shot = artifacts_dir(tmp_path) / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
            charts = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.alt, e.complete && e.naturalWidth > 0])"
            )
            headings = page.locator("h2").all_inner_texts()
    assert len(study.trials) == 3 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert dict(charts) == {
        "learning curves": True,
        "parallel coordinates": True,
        "slice plot": True,
        "parameter importances": True,
    }, charts
    sections = ("Best trial", "Learning curves", "Parameters against the metric",
                "Parameter importances", "Searched space", "All trials, best first")  # fmt: skip
    assert set(sections) <= set(headings), headings


def test_dashboard_listens_on_loopback_only_and_warns_for_other_hosts(finished_study, servers):
    root, _ = finished_study
    dashboard = servers["dashboard"]
    dashboard.wait_ready()

    # The listening socket, as the kernel lists it: 127.0.0.1 only.
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if Path(table).exists():
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port = local.rsplit(":", 1)
                if state == "0A" and int(port, 16) == dashboard.port:  # 0A: LISTEN
                    listening.add(address)
    if listening:
        assert listening == {"0100007F"}, listening  # 127.0.0.1, little-endian hex

    # From the machine's own non-loopback address (the one a route out would use), refused.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a UDP connect sends nothing
            own = probe.getsockname()[0]
        except OSError:
            own = None
    if own and not own.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((own, dashboard.port), timeout=5).close()
    assert listening or own, "found neither /proc/net/tcp nor a non-loopback address to try"

    # --host 0.0.0.0 warns on stderr before it binds. The port is the running dashboard's, so
    # the bind fails and nothing ever listens on every interface.
    done = subprocess.run(
        [sys.executable, str(REPO / "search.py"), "dashboard", "--host", "0.0.0.0"]
        + ["--port", str(dashboard.port)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=READY_S,
    )
    assert done.returncode == 2, done.stderr  # the port was busy: one error line, no traceback
    warning, error = done.stderr.splitlines()
    assert warning.startswith("warning:") and "0.0.0.0" in warning
    assert error.startswith(f"error: dashboard: cannot listen on 0.0.0.0:{dashboard.port}")
    assert done.stdout == ""


def test_mlflow_server_has_a_parent_run_and_one_nested_run_per_trial(finished_study, servers):
    _, study = finished_study
    trials = study.get_trials(deepcopy=False)
    mlflow = servers["mlflow"]
    mlflow.wait_ready()

    found = rest(mlflow, "/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": STUDY})
    experiment_id = found["experiment"]["experiment_id"]
    runs, search = [], {"experiment_ids": [experiment_id], "max_results": 1000}
    while True:
        page = rest(mlflow, "/api/2.0/mlflow/runs/search", body=search)
        runs += page.get("runs", [])
        if not page.get("next_page_token"):
            break
        search["page_token"] = page["next_page_token"]
    tags = {
        r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs
    }

    parents = [run_id for run_id, t in tags.items() if t.get("cephtune.role") == "study"]
    assert len(parents) == 1, tags
    parent = parents[0]
    assert tags[parent]["cephtune.study"] == STUDY
    assert tags[parent]["cephtune.best_trial"] == str(study.best_trial.number)
    children = {run_id: t for run_id, t in tags.items() if run_id != parent}
    assert all(t.get("mlflow.parentRunId") == parent for t in children.values()), children
    assert len(children) == len(trials)
    numbers = [t["cephtune.optuna_trial"] for t in children.values()]
    assert sorted(numbers, key=int) == [str(t.number) for t in trials]  # distinct, one each
    for run_id, t in children.items():
        trial = trials[int(t["cephtune.optuna_trial"])]
        assert t["cephtune.state"] == STATE_TAGS[trial.state]
        assert trial.user_attrs["mlflow_run_id"] == run_id
