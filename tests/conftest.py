"""Shared fixtures: one local Ray for the session, a scratch project folder per test."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    # No GPU on any machine: the GPU refusals tested with it hold on a GPU box too (the GPU
    # paths run in tests/test_gpu.py, each with its own Ray).
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def free_port() -> int:
    """A TCP port nothing listens on now, on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL server for the session (tests/postgres.py), or a skip that says
    why it cannot run here."""
    from postgres import PostgresServer, why_unavailable

    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    server = PostgresServer(free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hosts():
    """Two hosts on a private subnet, each its own network namespace, /tmp, home and cache,
    with a shared folder (tests/netns.py); removed after the module, or a skip that says why
    they cannot be made here."""
    from netns import Hosts, Unavailable

    try:
        made = Hosts(2)
    except Unavailable as e:
        pytest.skip(f"cannot make hosts on this machine: {e}")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def ray_hosts(hosts) -> str:
    """A Ray head on ``hosts[0]`` and a worker on ``hosts[1]``, one CPU each; the head's
    address. Every process of the hosts is killed after the test."""
    from cluster import start_ray

    try:
        yield start_ray(hosts)
    finally:
        hosts.kill_all()


@pytest.fixture(scope="module")
def hosts_postgres(hosts):
    """A PostgreSQL server every host reaches (tests/cluster.py ``start_postgres``), or a skip
    that says why."""
    from cluster import start_postgres
    from netns import Unavailable

    try:
        return start_postgres(hosts)
    except Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cephtune-cache")


@pytest.fixture
def project(tmp_path, monkeypatch, cache_dir) -> Path:
    """A scratch project folder as the current directory: studies/ and mlruns/ land here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CEPHTUNE_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


TINY_SPACE = """\
params:
  lr: {type: float, low: 1.0e-3, high: 3.0e-3, log: true}
  loss: {type: categorical, choices: [adaptive_wing, heatmap]}
fixed:
  backbone: hrnet_w18_small
  image_size: 64
  batch_size: 4
  warmup_epochs: 0
"""

TINY_STUDY = """\
name: {name}
dataset: {{format: synthetic, n: 12, size: [80, 100], seed: 3}}
space: space.yaml
num_samples: {num_samples}
max_epochs: {max_epochs}
asha: {{grace_period: {grace}, reduction_factor: 2}}
resources: {{cpu: 1}}
max_concurrent_trials: {concurrent}
seed: {seed}
"""


def tiny_study(
    root: Path,
    name: str = "tiny",
    num_samples: int = 4,
    max_epochs: int = 2,
    grace: int = 2,
    concurrent: int = 2,
    seed: int = 0,
    space: str = TINY_SPACE,
) -> Path:
    """A study of tiny HRNet trials on 12 synthetic 80 x 100 images: seconds per trial."""
    write(root / "space.yaml", space)
    text = TINY_STUDY.format(
        name=name,
        num_samples=num_samples,
        max_epochs=max_epochs,
        grace=grace,
        concurrent=concurrent,
        seed=seed,
    )
    return write(root / f"{name}.yaml", text)


# A small conditional space the space tests extend:
# model -> backbone (hrnet only), image_size -> batch_size; POINT is a warm-start point in it.
BASE = """\
params:
  model: {type: categorical, choices: [hrnet, resnet]}
  backbone: {type: categorical, choices: [hrnet_w18, hrnet_w32], when: {model: hrnet}}
  lr: {type: float, low: 1.0e-4, high: 5.0e-4, log: true}
  image_size: {type: categorical, choices: [256, 512]}
  batch_size: {type: int, low: 8, high: 32, step: 4, cases: [{when: {image_size: 512}, high: 16}]}
"""

POINT = "{model: hrnet, backbone: hrnet_w18, lr: 2.0e-4, image_size: 256, batch_size: 16}"


def optuna_study(project: Path, name: str):
    """Study ``name`` from the project's default Optuna storage, read with Optuna itself."""
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{project}/studies/optuna.db")


def trial_runs(project: Path, name: str, tracking_uri: str | None = None) -> list:
    """The MLflow runs of study ``name``'s trials (not its parent or promotion runs), from the
    project's default store or from ``tracking_uri`` (a tracking server)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri or f"sqlite:///{project}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if "cephtune.role" not in r.data.tags]  # study, promote: roles


def check_records(study, runs: list, num_samples: int) -> None:
    """What any stop of a study must leave: ``num_samples`` trials that finished on their own,
    nothing RUNNING, one closed MLflow run per trial (none twice) whose state tag matches
    Optuna's state."""
    from optuna.trial import TrialState

    from search.results import FAIL_REASON, INTERRUPTED

    tags = {
        TrialState.COMPLETE: "completed",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
    }
    assert TrialState.RUNNING not in [t.state for t in study.trials]
    done = [t for t in study.trials if t.user_attrs.get(FAIL_REASON) != INTERRUPTED]
    assert len(done) == num_samples
    numbers = [int(r.data.tags["cephtune.optuna_trial"]) for r in runs]
    assert len(numbers) == len(set(numbers))  # no trial logged twice
    assert all(r.info.status in ("FINISHED", "FAILED", "KILLED") for r in runs)
    for run in runs:
        trial = study.trials[int(run.data.tags["cephtune.optuna_trial"])]
        assert run.data.tags["cephtune.state"] == tags[trial.state]
