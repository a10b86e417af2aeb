"""What the dashboard and MLflow show must be true: pruned, failed, resumed trials."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.cli import main
from tests.helpers import TINY_SPACE, mlflow_url, optuna_study, tiny_study, trial_runs

pytestmark = pytest.mark.study
# A wider lr range than the default tiny space, so that ASHA has poor trials to stop.
SPACE = TINY_SPACE.replace("low: 1.0e-3", "low: 1.0e-4")


def study_files(
    root: Path,
    name: str,
    num_samples: int,
    max_epochs: int,
    concurrent: int = 1,
    space: str = SPACE,
) -> Path:
    return tiny_study(
        root, name, num_samples, max_epochs, grace=1, concurrent=concurrent, seed=1, space=space
    )


def test_asha_stops_are_pruned_with_every_intermediate_value(project, ray_cluster, capsys):
    assert main(["start", str(study_files(project, "asha", num_samples=6, max_epochs=3))]) == 0
    out = capsys.readouterr().out
    study = optuna_study(project, "asha")
    states = [t.state for t in study.trials]
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    runs = {r.data.tags["cephtune.optuna_trial"]: r for r in trial_runs(project, "asha")}
    client = MlflowClient(mlflow_url(project))
    for trial in study.trials:
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(1, len(steps) + 1))  # every epoch, the last one included
        run = runs[str(trial.number)]
        logged = [m.step for m in client.get_metric_history(run.info.run_id, "mre_mm")]
        assert logged == steps
        # The terminal: one line per event, by Optuna number, with the searched parameters.
        assert f"trial #{trial.number} started: loss={trial.params['loss']}, lr=" in out
        if trial.state == TrialState.COMPLETE:
            assert steps[-1] == 3 and trial.value == trial.intermediate_values[3]
            assert run.data.tags["cephtune.state"] == "completed"
            assert f"trial #{trial.number} completed: mre_mm {trial.value:.4g} after 3" in out
        else:
            assert steps[-1] < 3 and trial.value == trial.intermediate_values[steps[-1]]
            assert run.data.tags["cephtune.state"] == "pruned"
            assert f"trial #{trial.number} pruned at epoch {steps[-1]}: mre_mm" in out
    best = min((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert f"[6 finished, 0 running, of 6] best #{best.number} mre_mm {best.value:.4g}" in out
    assert "Trial status" not in out and "trainable_" not in out  # Ray's reporter is off


WARMUP_SPACE = (
    SPACE.replace("  warmup_epochs: 0\n", "").replace(
        "params:\n", "params:\n  warmup_epochs: {type: int, low: 0, high: 2}\n"
    )
    + """warm_start:
  - {warmup_epochs: 0, lr: 3.0e-3, loss: adaptive_wing}
  - {warmup_epochs: 2, lr: 1.0e-4, loss: heatmap}
  - {warmup_epochs: 2, lr: 1.0e-4, loss: adaptive_wing}
"""
)


def test_asha_rungs_compare_trials_after_their_warmup(project, ray_cluster):
    """A trial still ramping its learning rate is not compared with one past its warmup: its
    first rung is at epoch warmup + grace. The first point (no warmup) sets rung 1; the two with
    a 2-epoch warmup at a tenth of its learning rate would lose at epoch 1, mid-warmup."""
    path = study_files(project, "warm", num_samples=3, max_epochs=4, space=WARMUP_SPACE)
    assert main(["start", str(path)]) == 0
    study = optuna_study(project, "warm")
    assert [t.params["warmup_epochs"] for t in study.trials] == [0, 2, 2]
    for trial in study.trials:  # grace 1: every trial trains past its warmup before a rung
        assert len(trial.intermediate_values) >= trial.params["warmup_epochs"] + 1, trial
    runs = {r.data.tags["cephtune.optuna_trial"]: r for r in trial_runs(project, "warm")}
    epochs = len(study.trials[1].intermediate_values)
    assert runs["1"].data.metrics["epochs_after_warmup"] == epochs - 2


def test_random_search_without_early_stopping_runs_every_trial_to_max_epochs(project, ray_cluster):
    study_file = study_files(project, "baseline", num_samples=3, max_epochs=2)
    lines = [line for line in study_file.read_text().splitlines() if not line.startswith("asha")]
    study_file.write_text("\n".join([*lines, "sampler: random", "asha: false", ""]))
    assert main(["start", str(study_file)]) == 0
    study = optuna_study(project, "baseline")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert all(sorted(t.intermediate_values) == [1, 2] for t in study.trials)
    assert study.user_attrs["spec"]["sampler"] == {"name": "random"}
    assert study.user_attrs["spec"]["asha"] is None


def test_a_second_driver_on_the_same_study_refuses(project, capsys):
    from search.layout import Layout
    from search.run.lock import study_lock

    with study_lock(Layout.here(), "busy"):
        study_file = study_files(project, "busy", num_samples=1, max_epochs=1)
        assert main(["start", str(study_file)]) == 2
    err = capsys.readouterr().err
    assert "already being run by pid" in err
    assert not (project / "studies" / "optuna.db").exists()


def test_a_second_driver_elsewhere_on_the_same_postgres_study_refuses(
    project, tmp_path_factory, postgres, capsys
):
    """The file lock is per project folder; with a PostgreSQL storage an advisory lock in the
    database refuses a driver in another folder (or on another machine), even with --fresh."""
    import os
    import socket

    import optuna

    from search.layout import Layout
    from search.run.lock import study_lock

    url = postgres.url(postgres.createdb("locked"))
    elsewhere = Layout(tmp_path_factory.mktemp("elsewhere"))
    with study_lock(elsewhere, "busy", url):
        study_file = study_files(project, "busy", num_samples=1, max_epochs=1)
        study_file.write_text(study_file.read_text() + f"storage: {url}\n")
        assert main(["start", str(study_file), "--fresh"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: study 'busy' is already being run by cephtune driver pid {os.getpid()} on "
        f"{socket.gethostname()} (its lock in {url})"
    ]
    assert optuna.get_all_study_names(url) == []
    with study_lock(elsewhere, "busy", url):  # released when its holder let go
        pass


# The first point raises in its trial (timm builds the backbone, but it has no stride-4 features
# for the U-Net; only building it tells, and the driver never builds a model), the second's loss
# goes NaN, the third completes.
FAILING_SPACE = """\
params:
  backbone: {type: categorical, choices: [resnet18, vit_tiny_patch16_224]}
  aw_epsilon: {type: categorical, choices: [1.0, 1.0e-30]}
fixed:
  model: unet
  image_size: 64
  batch_size: 4
  warmup_epochs: 0
  lr: 1.0e-3
warm_start:
  - {backbone: vit_tiny_patch16_224, aw_epsilon: 1.0}
  - {backbone: resnet18, aw_epsilon: 1.0e-30}
  - {backbone: resnet18, aw_epsilon: 1.0}
"""


def test_raising_and_nan_trials_fail_with_reasons_and_the_study_goes_on(project, ray_cluster):
    study_file = study_files(project, "faults", num_samples=3, max_epochs=2, space=FAILING_SPACE)
    assert main(["start", str(study_file)]) == 0
    study = optuna_study(project, "faults")
    first, second, third = study.trials  # warm-start points run first, in order
    assert first.params == {"backbone": "vit_tiny_patch16_224", "aw_epsilon": 1.0}
    assert second.params == {"backbone": "resnet18", "aw_epsilon": 1.0e-30}
    assert first.state == second.state == TrialState.FAIL
    reason = first.user_attrs["fail_reason"]
    assert reason.startswith("error: ConfigError: unet backbone 'vit_tiny_patch16_224' has no")
    assert second.user_attrs["fail_reason"].startswith("nan_loss")
    assert third.state == TrialState.COMPLETE and study.best_trial.number == third.number
    runs = {r.data.tags["cephtune.optuna_trial"]: r for r in trial_runs(project, "faults")}
    for trial in (first, second):
        run = runs[str(trial.number)]
        assert run.info.status == "FAILED" and run.data.tags["cephtune.state"] == "failed"
        assert run.data.tags["cephtune.fail_reason"] == trial.user_attrs["fail_reason"]


# Both trials' batches are the whole train split (8 images) within the 0.25 GB their processes
# may add (cpu_memory_gb): a real allocation failure of the CPU allocator. At 256 px a pass of
# 2 samples fits (about 0.17 GB), so that trial goes on with a smaller micro-batch; at 512 px
# not even one sample fits (about 0.36 GB), so that one fails as oom.
OOM_SPACE = """\
params:
  image_size: {type: categorical, choices: [256, 512]}
  batch_size: {type: categorical, choices: [8, 16]}
fixed:
  backbone: hrnet_w18_small
  warmup_epochs: 0
  cpu_memory_gb: 0.25
warm_start:
  - {image_size: 512, batch_size: 16}
  - {image_size: 256, batch_size: 8}
"""


def test_out_of_memory_shrinks_the_micro_batch_or_fails_as_oom(project, ray_cluster, capsys):
    # Both trials at once, so each runs in a fresh worker process: under RLIMIT_DATA heap that
    # a previous trial freed but the allocator kept would be spent again without counting.
    study_file = study_files(
        project, "oom", num_samples=2, max_epochs=1, concurrent=2, space=OOM_SPACE
    )
    assert main(["start", str(study_file)]) == 0
    # The estimate before the start (it counts tensors only, so one sample at 512 px seems to
    # fit: the run finds out otherwise).
    out = capsys.readouterr().out
    for size, fits in ((256, 4), (512, 1)):
        assert (
            f"Memory: hrnet hrnet_w18_small at {size} px fits a batch of {fits} in cpu_memory_gb "
            "0.25 (estimated); its trials with larger batches (up to 16) train in micro-batches"
        ) in out
    study = optuna_study(project, "oom")
    big, fitted = study.trials
    assert big.params == {"image_size": 512, "batch_size": 16}
    assert big.state == TrialState.FAIL
    assert big.user_attrs["fail_reason"].startswith("oom: epoch 1, micro-batch 1: ")
    assert re.search("allocate|bad_alloc", big.user_attrs["fail_reason"])
    assert fitted.state == TrialState.COMPLETE
    micro, accumulation = fitted.user_attrs["micro_batch"], fitted.user_attrs["grad_accumulation"]
    assert micro in (1, 2) and micro * accumulation == 8
    runs = {r.data.tags["cephtune.optuna_trial"]: r for r in trial_runs(project, "oom")}
    assert runs[str(big.number)].data.tags["cephtune.fail_reason"] == big.user_attrs["fail_reason"]
    assert runs[str(fitted.number)].data.metrics["micro_batch"] == micro
    assert runs[str(fitted.number)].data.metrics["grad_accumulation"] == accumulation


def test_a_space_whose_configuration_fits_no_sample_is_refused(project, ray_cluster, capsys):
    space = OOM_SPACE.replace("cpu_memory_gb: 0.25", "cpu_memory_gb: 0.1")
    study_file = study_files(project, "toobig", num_samples=2, max_epochs=1, space=space)
    assert main(["start", str(study_file)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {project / 'space.yaml'}: params.image_size: hrnet hrnet_w18_small at 512 px "
        "needs about 0.2 GB for one sample (training-memory estimate), more than a trial has "
        "(cpu_memory_gb 0.1); drop that size or backbone from the space\n"
    )
    assert not (project / "studies" / "optuna.db").exists()


def test_gpu_study_fails_fast_without_a_gpu_unless_cpu(project, ray_cluster, capsys):
    study_file = study_files(project, "gpu", num_samples=1, max_epochs=1)
    study_file.write_text(study_file.read_text().replace("{cpu: 1}", "{cpu: 1, gpu: 0.25}"))
    assert main(["start", str(study_file)]) == 2
    err = capsys.readouterr().err
    assert "resources.gpu asks for 0.25 GPU per trial but the cluster has 0" in err
    assert "--cpu" in err and not (project / "studies" / "optuna.db").exists()
    assert main(["start", str(study_file), "--cpu"]) == 0
    assert optuna_study(project, "gpu").trials[0].state == TrialState.COMPLETE


def test_gpu_study_refuses_a_ray_that_would_not_isolate_its_gpus(
    project, ray_cluster, monkeypatch, capsys
):
    """Under RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES every trial would train on GPU 0."""
    study_file = study_files(project, "noset", num_samples=1, max_epochs=1)
    study_file.write_text(study_file.read_text().replace("{cpu: 1}", "{cpu: 1, gpu: 0.5}"))
    monkeypatch.setenv("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES", "1")
    assert main(["start", str(study_file)]) == 2
    err = capsys.readouterr().err
    assert "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1 is set" in err and "GPU 0" in err
    assert err.count("\n") == 1 and not (project / "studies" / "optuna.db").exists()
