"""What the tests share besides fixtures (those are in ``tests/conftest.py``): tiny studies and
configs, where a project's stores are, what any stop of a study must leave, free ports."""

from __future__ import annotations

import signal
import socket
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nothing listens on now, on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolate(mp: pytest.MonkeyPatch, folder: Path, cache: Path) -> Path:
    """Make ``folder`` the project a command runs in, as a new user's: it is the current
    directory, the cache is ``cache``, and no MLflow store is chosen by the environment."""
    mp.chdir(folder)
    mp.setenv("CEPHTUNE_CACHE_DIR", str(cache))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return folder


def as_a_terminal_job() -> None:
    """``preexec_fn`` of a command a test stops with Ctrl-C (SIGINT): the signal's default
    disposition, as a terminal's foreground job has it. A job a non-interactive shell starts in
    the background (``make test &``, as a CI runner may) inherits SIGINT ignored, and a Python
    started so never raises KeyboardInterrupt: the command would never see the Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def optuna_url(project: Path) -> str:
    """The project's default Optuna storage (``studies/optuna.db``)."""
    return f"sqlite:///{project}/studies/optuna.db"


def mlflow_url(project: Path) -> str:
    """The project's default MLflow store (``mlruns/mlflow.db``)."""
    return f"sqlite:///{project}/mlruns/mlflow.db"


# The tiny trainable every training test runs: seconds per epoch on a CPU.
TINY_TRAINABLE = {
    "model": "hrnet",
    "backbone": "hrnet_w18_small",
    "image_size": 64,
    "batch_size": 4,
}


def tiny_config(**overrides):
    """A ``TrainConfig`` of the tiny trainable (``overrides`` on top)."""
    from trainables.config import TrainConfig

    return TrainConfig.from_dict({**TINY_TRAINABLE, "warmup_epochs": 0, **overrides})


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
    concurrent: int = 1,
    seed: int = 0,
    space: str = TINY_SPACE,
) -> Path:
    """A study of tiny HRNet trials on 12 synthetic 80 x 100 images: seconds per trial.

    One trial at a time unless ``concurrent`` says otherwise: Ray reuses the one actor, so the
    trials share one worker process, whose start (Ray's worker, torch and timm imported: about
    5 CPU-s) costs more than a tiny trial's training (under 1 CPU-s). The suite is CPU-bound on
    its two cores; a test about concurrent trials asks for them."""
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

    return optuna.load_study(study_name=name, storage=optuna_url(project))


def trial_runs(project: Path, name: str, tracking_uri: str | None = None) -> list:
    """The MLflow runs of study ``name``'s trials (not its parent or promotion runs), from the
    project's default store or from ``tracking_uri`` (a tracking server)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri or mlflow_url(project))
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if "cephtune.role" not in r.data.tags]  # study, promote: roles


def check_records(study, runs: list, num_samples: int, tracking_uri: str) -> None:
    """What any stop of a study must leave: ``num_samples`` trials that finished on their own,
    nothing RUNNING, exactly one closed MLflow run per such trial (none missing, none twice)
    whose state tag matches Optuna's state, and no epoch logged twice in a run's objective
    history on ``tracking_uri`` (a trial that re-runs epochs after a retry or a resume)."""
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    from search.records.trials import FAIL_REASON, INTERRUPTED

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
    missing = {t.number for t in done} - set(numbers)
    assert not missing, f"trials without an MLflow run: {sorted(missing)}"
    assert all(r.info.status in ("FINISHED", "FAILED", "KILLED") for r in runs)
    for run in runs:
        trial = study.trials[int(run.data.tags["cephtune.optuna_trial"])]
        assert run.data.tags["cephtune.state"] == tags[trial.state]
        history = MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "mre_mm")
        steps = [m.step for m in history]
        assert len(steps) == len(set(steps)), (trial.number, sorted(steps))


def stand_in_nvidia_smi(
    folder: Path, rows: str = "Tesla V100-SXM2-16GB, 16384, 535.104.05, 7.0"
) -> Path:
    """A folder holding an ``nvidia-smi`` that lists ``rows`` (name, MiB, driver, compute
    capability; one line per GPU) for cephtune's query, and fails for any other: no machine
    here has a GPU, and what the driver lists is what is tested."""
    from trainables.gpu_env import QUERY

    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "nvidia-smi"
    fake.write_text(
        f'#!/bin/sh\n[ "$1 $2" = "{QUERY} --format=csv,noheader,nounits" ] || exit 9\n'
        f"printf '{rows.replace(chr(10), chr(92) + 'n')}\\n'\n"
    )
    fake.chmod(0o755)
    return bin_dir
