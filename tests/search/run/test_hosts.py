"""A study on a cluster of two hosts (tests/netns.py): Ray head on h1, worker on h2, Optuna in
PostgreSQL and MLflow behind a tracking server, both on the gateway; each host its own disk,
the experiments in the shared folder. Faults are injected while the study runs: the worker
host dies, the driver's host dies and the study is resumed from the other host, PostgreSQL
restarts, a second driver on another host tries to run the same study."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.records.trials import FAIL_REASON, HOSTNAME, INTERRUPTED, NODE_IP
from tests.cluster import RAY_PORT, search_py, start_mlflow, start_ray
from tests.helpers import TINY_SPACE, check_records, trial_runs, write
from trainables.data.synth import SynthSpec, write_dataset

pytestmark = pytest.mark.cluster

STUDY = """\
name: {name}
dataset: {{format: synthetic, n: 12, size: [80, 100], seed: 3}}
space: space.yaml
num_samples: {num_samples}
max_epochs: {epochs}
asha: false
resources: {{cpu: 1}}
max_concurrent_trials: 2
max_failures: {max_failures}
storage: {storage}
"""
EPOCHS = 12  # a trial lasts long enough to be caught running on a host


@pytest.fixture(scope="module")
def mlflow_server(hosts, hosts_postgres) -> str:
    return start_mlflow(hosts, hosts_postgres.url(hosts_postgres.createdb("mlflow")))


def study_file(hosts, name: str, storage: str, extra: str = "", **keys) -> str:
    """A study file in the shared folder (every host reads it, as from a shared checkout):
    EPOCHS a trial, a checkpoint after each, every trial to the end."""
    folder = hosts.shared / "studies"
    write(folder / "space.yaml", TINY_SPACE + "  checkpoint_every: 1\n")
    values = {"num_samples": 4, "epochs": EPOCHS, "max_failures": 0, **keys}
    path = write(folder / f"{name}.yaml", STUDY.format(name=name, storage=storage, **values))
    path.write_text(path.read_text() + extra)
    return str(path)


def wait_for(what: str, check: Callable[[], object], driver, timeout: float = 300):
    """Poll ``check`` until it returns something true; fail if the driver exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if driver is not None and driver.poll() is not None:
            log = getattr(driver, "log_file", None)
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            pytest.fail(
                f"the driver exited {driver.returncode} before {what}; its log ends:\n{tail}"
            )
        time.sleep(0.3)
    pytest.fail(f"no {what} in {timeout} s")


def running_on(study: optuna.Study, ip: str, epochs: int, at_most: int = EPOCHS):
    """A trial running on node ``ip`` that reported at least ``epochs`` epochs and at most
    ``at_most``, or None."""
    for trial in study.get_trials(states=(TrialState.RUNNING,)):
        reported = len(trial.intermediate_values)
        if trial.user_attrs.get(NODE_IP) == ip and epochs <= reported <= at_most:
            return trial
    return None


def watch(url: str, name: str, driver) -> optuna.Study:
    """The study as the test reads it, once the driver created it; its connections are
    tested before use, so a PostgreSQL restart does not break the test's own reads."""
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    wait_for("the study", lambda: name in {s.study_name for s in storage.get_all_studies()},
             driver)  # fmt: skip
    return optuna.load_study(study_name=name, storage=storage)


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def test_the_worker_host_and_then_the_driver_host_die_and_the_study_finishes_elsewhere(
    hosts, ray_hosts, hosts_postgres, mlflow_server
):
    """Trials spread over both hosts; a second driver on h2 refuses (start and resume); h2
    dies mid-trial and, with ``max_failures: 1``, its trial continues on h1 from the shared
    checkpoint; then h1 dies (driver and Ray head) and ``resume`` on h2 finishes the study."""
    h1, h2 = hosts
    name = "survive"
    url = hosts_postgres.url(hosts_postgres.createdb(name))
    experiments = hosts.shared / "experiments"
    spec = study_file(hosts, name, url, f"experiment_path: {experiments}\n", max_failures=1)
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    driver = h1.popen(search_py("start", spec, "--address", ray_hosts), log="driver", env=env)
    study = watch(url, name, driver)

    # A second driver on the other host, same storage, same study: refused by the lock in
    # PostgreSQL (the file lock is in h2's own project folder). --fresh would delete it. The
    # resume runs from another folder of h2's (a resume works from anywhere): from the same
    # one, the two would race for that folder's file lock, and the loser would be refused by
    # the winner instead (seen once on a loaded machine: "already being run by pid N").
    argvs = (["start", spec, "--fresh"], ["resume", name, "--storage", url])
    seconds = [h2.popen(search_py(*argv, "--address", ray_hosts), log=f"second-{i}", env=env,
                        cwd=(h2.project, h2.home)[i])
               for i, argv in enumerate(argvs)]  # fmt: skip
    for i, second in enumerate(seconds):
        assert second.wait(timeout=120) == 2
        lines = h2.log(f"second-{i}").read_text().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert f"study {name!r} is already being run by cephtune driver pid" in lines[0]
        assert f"on {h1.hostname}" in lines[0]

    # Early in its run, so that on h1 it has epochs left to be seen running (caught at epoch 11
    # of 12 it can finish on h1 between two looks).
    on_h2 = wait_for("a trial 2 to 6 epochs into its run on h2",
                     lambda: running_on(study, h2.ip, 2, at_most=EPOCHS // 2), driver)  # fmt: skip
    assert on_h2.user_attrs[HOSTNAME] == h2.hostname
    h2.kill_all()  # the worker host crashes mid-trial
    epochs_on_h2 = len(study.trials[on_h2.number].intermediate_values)

    def moved():
        trial = study.trials[on_h2.number]
        return trial.user_attrs.get(NODE_IP) == h1.ip and trial

    moved = wait_for("the trial of h2 going on on h1", moved, driver)
    assert moved.state == TrialState.RUNNING

    def finished_and_running():
        trials = study.get_trials()
        done = [t for t in trials if t.state.is_finished()]
        running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        return len(done) >= 1 and running

    wait_for("a finished trial and a running one", finished_and_running, driver)
    h1.kill_all()  # the driver's host dies: the driver and the Ray head with it
    # A new head on h2, and the study resumed there from a folder of h2's own: the project
    # folder h1 ran it in does not exist on h2.
    shutil.rmtree(h2.outside(h2.project))
    try:
        address = start_ray([h2], cwd=h2.home)
        assert address == f"{h2.ip}:{RAY_PORT}"
        resumed = h2.run(search_py("resume", name, "--storage", url, "--address", address),
                         env=env, cwd=h2.home, timeout=400, check=False)  # fmt: skip
    finally:
        h2.outside(h2.project).mkdir()  # the next test's Ray starts there
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    study = optuna.load_study(study_name=name, storage=url)
    runs = trial_runs(None, name, mlflow_server)
    check_records(study, runs, 4, mlflow_server)
    ended = [t for t in study.trials if t.state != TrialState.FAIL]
    assert {t.state for t in ended} == {TrialState.COMPLETE}
    assert {t.user_attrs[NODE_IP] for t in ended} == {h1.ip, h2.ip}
    for run in runs:  # MLflow says where each trial ran, as Optuna does
        trial = study.trials[int(run.data.tags["cephtune.optuna_trial"])]
        assert run.data.tags["cephtune.node_ip"] == trial.user_attrs[NODE_IP]
        assert run.data.tags["cephtune.hostname"] == trial.user_attrs[HOSTNAME]
    # The trial of h2 went on on h1 from its last checkpoint, not from its first epoch, and
    # Optuna has each of its epochs once.
    again = study.trials[on_h2.number]
    if again.state == TrialState.FAIL:
        # Seen in 2 of 7 runs (its reason was not captured then). The likely cause: it was
        # still running on h1 when h1 died; ``kill_all`` kills h1's processes one by one, and
        # when its worker died a moment before the driver, the driver counted a second
        # failure and, its one retry spent, recorded FAIL before it died itself.
        assert again.user_attrs[FAIL_REASON].startswith("worker_died: ")
    else:
        assert again.state == TrialState.COMPLETE
        assert sorted(again.intermediate_values) == list(range(1, EPOCHS + 1))
    # Ray counts the reports since a trial's last restore, so an epoch s reported with count v
    # was run by a restore that began at epoch s - v + 1 (1: no restore yet). Each epoch is
    # logged once, its first report: an epoch h2 reported after its last checkpoint and h1 ran
    # again keeps h2's count, so the restore's own first epoch may show no count of 1 (seen
    # once: h2 reported epoch 3, h1 went on from epoch 2's checkpoint, epochs 4-12 have 2-10).
    run = next(r for r in runs if r.data.tags["cephtune.optuna_trial"] == str(again.number))
    history = MlflowClient(mlflow_server).get_metric_history(
        run.info.run_id, "iterations_since_restore"
    )
    # A restart from scratch would leave no restore past epoch 1. The checkpoint it went on
    # from may be older than the last epoch Optuna recorded on h2 (the report comes before the
    # checkpoint reaches the shared folder; seen once: epoch 2 reported, epoch 1's checkpoint).
    restores = sorted({m.step - int(m.value) + 1 for m in history} - {1})
    assert restores and 2 <= restores[0] <= epochs_on_h2 + 2, history


def test_postgres_restarts_then_goes_away_and_the_worker_host_dies_without_retries(
    hosts, ray_hosts, hosts_postgres, mlflow_server
):
    """PostgreSQL restarts mid-study (every connection dropped): the driver rides through.
    The worker host dies with ``max_failures: 0``: its trial is FAIL ``worker_died`` and the
    study goes on. Then PostgreSQL stays away longer than the driver waits for it: the driver
    stops with one line that says how to continue, and ``resume`` finishes the study."""
    h1, h2 = hosts
    name = "restart"
    url = hosts_postgres.url(hosts_postgres.createdb(name))
    spec = study_file(hosts, name, url, f"experiment_path: {hosts.shared / 'experiments'}\n")
    # The driver waits up to 30 s for PostgreSQL, and MLflow's client for its server (whose
    # store is in the same PostgreSQL) through 5 retries, 1 + 2 + 4 + 8 + 16 s apart: on a
    # loaded 2-core machine the restart must fit in these (15 s and 4 retries once did not,
    # in one of several full runs; the driver's log was not kept, and now is shown).
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "CEPHTUNE_DB_WAIT_S": "30",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
           "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}  # fmt: skip
    driver = h1.popen(search_py("start", spec, "--address", ray_hosts), log="driver", env=env)
    study = watch(url, name, driver)
    on_h2 = wait_for("a trial 2 epochs into its run on h2", lambda: running_on(study, h2.ip, 2),
                     driver)  # fmt: skip
    hosts_postgres.restart()
    h2.kill_all()
    wait_for("the trial of h2 failed", lambda: study.trials[on_h2.number].state.is_finished(),
             driver)  # fmt: skip
    hosts_postgres.down()
    try:
        assert driver.wait(timeout=300) == 2, h1.log("driver").read_text()[-3000:]
    finally:
        hosts_postgres.up()
    # Whichever the driver wrote to first, the Optuna storage or the MLflow server, says so.
    last = h1.log("driver").read_text().strip().splitlines()[-1]
    assert last.startswith(
        (f"error: {spec}: storage: the database was lost mid-study and not back within 30 s",
         f"error: MLFLOW_TRACKING_URI: the MLflow tracking server {mlflow_server} failed "
         "mid-study")
    ), last  # fmt: skip
    assert last.endswith(f"continue with `python search.py resume {name} --storage {url}`")
    resumed = h1.run(search_py("resume", name, "--storage", url, "--address", ray_hosts),
                     env=env, timeout=400, check=False)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    study = optuna.load_study(study_name=name, storage=url)
    check_records(study, trial_runs(None, name, mlflow_server), 4, mlflow_server)
    failed = study.trials[on_h2.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs[FAIL_REASON].startswith("worker_died: ")
    others = [t for t in study.trials if t.number != on_h2.number
              and t.user_attrs.get(FAIL_REASON) != INTERRUPTED]  # fmt: skip
    assert [t.state for t in others] == [TrialState.COMPLETE] * 3
    assert {t.user_attrs[NODE_IP] for t in others} == {h1.ip}  # h2 was gone


def test_a_start_is_refused_before_any_record_when_a_node_lacks_what_it_needs(
    hosts, ray_hosts, hosts_postgres, mlflow_server
):
    """Each refusal names the host and says why, in one line, and leaves no study in
    PostgreSQL and no experiment on the MLflow server: a local MLflow store, an experiment
    folder on the driver's own disk, a dataset on one host only."""
    h1, h2 = hosts
    url = hosts_postgres.url(hosts_postgres.createdb("refused"))
    server = {"MLFLOW_TRACKING_URI": mlflow_server}
    shared = f"experiment_path: {hosts.shared / 'experiments'}\n"
    write_dataset(SynthSpec(n=12, width=80, height=100, seed=3), h1.outside(h1.project) / "data")
    real = STUDY.replace(
        "{{format: synthetic, n: 12, size: [80, 100], seed: 3}}",
        f"{{{{format: aariz, root: {h1.project / 'data'}}}}}",
    )
    cases = [
        ("local-mlflow", STUDY, shared, {}, ("MLFLOW_TRACKING_URI", "is a file on this machine",
                                             "has 2 nodes", "mlflow server")),
        ("local-experiments", STUDY, "", server, ("experiment_path (not set: studies/NAME)",
                                                  "is not shared", h2.hostname, h2.ip)),
        ("data-on-h1-only", real, shared, server, ("dataset.root", h2.hostname, h2.ip,
                                                   "dataset folder missing",
                                                   "same path on every node")),
    ]  # fmt: skip
    for name, template, extra, env, expect in cases:
        folder = hosts.shared / "studies"
        write(folder / "space.yaml", TINY_SPACE)
        text = template.format(name=name, storage=url, num_samples=2, epochs=2, max_failures=0)
        spec = write(folder / f"{name}.yaml", text + extra)
        result = h1.run(search_py("start", str(spec), "--address", ray_hosts), env=env,
                        check=False)  # fmt: skip
        line = one_error_line(result)
        assert line.startswith(f"error: {spec}: ") or name == "local-mlflow", line
        for part in expect:
            assert part in line, line
    assert optuna.get_all_study_names(url) == []
    experiments = {e.name for e in MlflowClient(mlflow_server).search_experiments()}
    assert experiments.isdisjoint(name for name, *_ in cases)
    assert not (h1.outside(h1.project) / "studies" / "local-experiments").exists()
