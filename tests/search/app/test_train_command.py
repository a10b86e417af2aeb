"""`search.py train`: one configuration without Ray, checkpoints, --resume, MLflow."""

from __future__ import annotations

import os

import pytest
import yaml
from mlflow.tracking import MlflowClient

from search.cli import main
from tests.helpers import mlflow_url, stand_in_nvidia_smi
from trainables.data.synth import SynthSpec, write_dataset


@pytest.fixture
def config_file(project):
    write_dataset(SynthSpec(n=8, width=80, height=100, seed=4), project / "data")
    values = dict(
        data_dir="data",
        model="hrnet",
        backbone="hrnet_w18_small",
        image_size=64,
        batch_size=4,
        epochs=2,
        warmup_epochs=0,
        lr=1e-3,
    )
    path = project / "one.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_train_writes_checkpoints_and_an_mlflow_run_then_resumes(project, config_file, capsys):
    assert main(["train", str(config_file)]) == 0
    assert "best valid MRE" in capsys.readouterr().out
    out = project / "runs" / "one"
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()

    values = yaml.safe_load(config_file.read_text())
    values["epochs"] = 3
    config_file.write_text(yaml.safe_dump(values))
    assert main(["train", str(config_file), "--resume", str(out / "last.pt")]) == 0

    client = MlflowClient(mlflow_url(project))
    experiment = client.get_experiment_by_name("train")
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    steps = [[m.step for m in client.get_metric_history(r.info.run_id, "mre_mm")] for r in runs]
    assert steps == [[1, 2], [3]]
    assert runs[0].data.params["image_size"] == "64"
    assert runs[0].data.params["precision"] == "auto"  # what was asked; the tags say what ran
    assert runs[0].data.tags["cephtune.precision"] == "fp32"
    assert runs[0].data.tags["cephtune.device"] == "cpu"


def test_resume_refuses_a_changed_config(project, config_file, capsys):
    assert main(["train", str(config_file)]) == 0
    values = yaml.safe_load(config_file.read_text())
    values.update(epochs=3, lr=5e-3)
    config_file.write_text(yaml.safe_dump(values))
    assert main(["train", str(config_file), "--resume", "runs/one/last.pt"]) == 2
    err = capsys.readouterr().err
    assert "lr=0.001" in err and "only epochs may change" in err


def test_train_config_errors_are_one_line(project, capsys):
    bad = project / "bad.yaml"
    bad.write_text("data_dir: nowhere\nlrate: 0.1\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown trainable key 'lrate'" in err and "bad.yaml" in err


def test_a_config_that_selects_by_sdr_keeps_the_epoch_with_the_highest_sdr(
    project, config_file, capsys
):
    """``best_metric: sdr_2mm`` (a study with that metric writes it into ``best.yaml``):
    ``best.pt`` is the first epoch with the highest valid SDR, not the lowest MRE."""
    from trainables import checkpoint

    values = yaml.safe_load(config_file.read_text())
    values.update(epochs=4, best_metric="sdr_2mm", best_mode="max")
    config_file.write_text(yaml.safe_dump(values))
    assert main(["train", str(config_file), "--out", "runs/sdr"]) == 0
    assert "best valid sdr_2mm" in capsys.readouterr().out
    client = MlflowClient(mlflow_url(project))
    run = client.search_runs([client.get_experiment_by_name("train").experiment_id])[0]
    history = client.get_metric_history(run.info.run_id, "sdr_2mm")
    sdr = [m.value for m in sorted(history, key=lambda m: m.step)]
    best = checkpoint.load(project / "runs" / "sdr" / "best.pt")
    assert best["epoch"] == 1 + sdr.index(max(sdr)) and best["best"] == pytest.approx(max(sdr))


def test_train_refuses_a_gpu_torch_cannot_use_rather_than_take_the_cpu(
    project, config_file, monkeypatch, capsys
):
    """The driver lists a V100 (driver 535) and this torch cannot use it: one line with the
    fix, nothing trained; ``CUDA_VISIBLE_DEVICES=`` asks for the CPU, and gets it."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is here: the GPU is usable")
    monkeypatch.setenv("PATH", f"{stand_in_nvidia_smi(project)}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert main(["train", str(config_file), "--out", str(project / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nvidia-smi lists 1 GPU(s) (Tesla V100-SXM2-16GB" in err
    assert "or set CUDA_VISIBLE_DEVICES= to run on the CPU" in err
    assert not (project / "out" / "last.pt").exists()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert main(["train", str(config_file), "--out", str(project / "out")]) == 0
