"""From a finished study to a registered model: promote, train, predict, evaluate, report."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from search.cli import main
from tests.helpers import mlflow_url, optuna_url, tiny_study

pytestmark = pytest.mark.study


def test_promote_registers_a_champion_that_predicts_and_scores(project, ray_cluster, capsys):
    study_file = tiny_study(project, name="promo", num_samples=2, max_epochs=1, grace=1)
    assert main(["start", str(study_file)]) == 0
    assert main(["promote", "promo", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "as @champion" in out

    best_yaml = project / "studies" / "promo" / "best.yaml"
    values = yaml.safe_load(best_yaml.read_text())
    assert values["epochs"] == 3 and values["backbone"] == "hrnet_w18_small"
    final = project / "studies" / "promo" / "final"
    first = json.loads((final / "test_metrics.json").read_text())
    assert first["alias"] == "champion" and first["images"] >= 1
    assert (final / "per_landmark.csv").is_file() and (final / "per_landmark.md").is_file()
    assert len(list((final / "overlays").glob("*.png"))) == 3

    # best.yaml is a config `train` accepts as is.
    assert main(["train", str(best_yaml), "--out", str(project / "again")]) == 0
    assert (project / "again" / "best.pt").is_file()

    client = MlflowClient(mlflow_url(project))
    champion = client.get_model_version_by_alias("promo", "champion")
    run = client.get_run(champion.run_id)
    parent = client.get_experiment_by_name("promo")
    parents = client.search_runs([parent.experiment_id], "tags.`cephtune.role` = 'study'")
    assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert run.data.metrics["test_mre_mm"] == pytest.approx(first["mre_mm"])

    # The champion predicts new images; its JSON scores through `evaluate`.
    data_dir = values["data_dir"]
    test_images = project / "data_test"
    test_images.symlink_to(f"{data_dir}/test/Cephalograms")
    assert (
        main(
            [
                "predict",
                "--model",
                "models:/promo@champion",
                str(test_images),
                "--out",
                str(project / "pred"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(project / "pred"), "--dataset", data_dir, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["mre_mm"] == pytest.approx(first["mre_mm"], rel=0.05)

    assert main(["report", "promo"]) == 0
    report = project / "studies" / "promo" / "report" / "report.html"
    html = report.read_text()
    study = optuna.load_study(study_name="promo", storage=optuna_url(project))
    assert f"#{study.best_trial.number}" in html
    assert f"{first['mre_mm']:.4g}" in html  # the promoted model's test table


def test_promote_rechecks_the_top_trials_and_can_train_on_train_and_valid(
    project, ray_cluster, capsys
):
    study_file = tiny_study(project, name="top2", num_samples=3, max_epochs=1, grace=1)
    assert main(["start", str(study_file)]) == 0
    assert (
        main(
            [
                "promote",
                "top2",
                "--trials",
                "2",
                "--epochs",
                "1",
                "--train-on",
                "train+valid",
                "--seed",
                "7",
                "--tta",
            ]
        )
        == 0
    )
    folder = project / "studies" / "top2"
    assert len(list((folder / "candidates").glob("trial-*.yaml"))) == 2
    values = yaml.safe_load((folder / "best.yaml").read_text())
    assert values["train_on"] == "train+valid" and values["seed"] == 7
    metrics = json.loads((folder / "final" / "test_metrics.json").read_text())
    assert metrics["checkpoint"] == "last.pt" and metrics["alias"] == "champion"
    assert metrics["epochs"] == metrics["tested_epoch"] == values["epochs"]
    # Tested with test-time augmentation, said in the test report and on the MLflow run.
    assert metrics["tta"].startswith("identity, scales [0.95, 1.05]")
    assert "mirrored" not in metrics["tta"]  # the tiny space does not train with aug_flip
    client = MlflowClient(mlflow_url(project))
    champion = client.get_model_version_by_alias("top2", "champion")
    assert client.get_run(champion.run_id).data.tags["cephtune.test_tta"] == metrics["tta"]
    study = optuna.load_study(study_name="top2", storage=optuna_url(project))
    ranked = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)[
        :2
    ]
    assert {f"trial-{t.number}.yaml" for t in ranked} == {
        p.name for p in (folder / "candidates").glob("trial-*.yaml")
    }


def test_promote_without_a_completed_trial_is_one_line(project, capsys):
    import optuna as ot

    storage = optuna_url(project)
    (project / "studies").mkdir()
    ot.create_study(study_name="empty", storage=storage)
    assert main(["promote", "empty"]) == 2
    err = capsys.readouterr().err
    assert "has no completed trial to promote" in err and err.count("\n") == 1


def test_a_model_becomes_champion_only_by_a_strictly_better_test_mre(project):
    """The alias decision on controlled test scores, through the registry itself: worse and
    equal models are challengers, a better one takes the champion alias."""
    import torch

    from search.app.registry import alias_for, register
    from search.layout import Layout
    from search.records.tracking import Tracking
    from tests.helpers import tiny_config
    from trainables.models import create_model

    assert alias_for(2.0, None) == "champion"
    assert alias_for(2.0, 2.0) == "challenger"  # a tie keeps the champion
    assert alias_for(1.9, 2.0) == "champion"
    tracking = Tracking(Layout.here(), writes=True)
    cfg = tiny_config(dataset_format="aariz")
    torch.manual_seed(0)
    model = create_model(cfg, 29)
    got = []
    for mre in (2.0, 3.0, 2.0, 1.5):
        run_id = tracking.start_run("aliases", f"mre-{mre}", {}, {})
        got.append(register(tracking, "aliases", run_id, model, cfg, {"mre_mm": mre}, project))
        tracking.end_run(run_id)
    assert [alias for _, alias in got] == ["champion", "challenger", "challenger", "champion"]
    client = MlflowClient(mlflow_url(project))
    assert str(client.get_model_version_by_alias("aliases", "champion").version) == got[-1][0]
    assert str(client.get_model_version_by_alias("aliases", "challenger").version) == got[2][0]


def test_promote_with_seeds_reports_intervals_and_a_paired_test_then_an_ensemble(
    project, ray_cluster, capsys
):
    """``--trials 2 --seeds 2``: four re-trainings, the candidate with the lower mean valid MRE
    promoted, mean ± 95 % interval per candidate and a paired per-image test of the top two in
    the test report and MLflow. ``--ensemble 2``: the top two merged into one registered model
    whose predictions are the mean of its members', each at its own input size."""
    import numpy as np

    from search.app.registry import load_registered
    from search.layout import Layout
    from search.records.tracking import Tracking
    from trainables.eval.ensemble import Ensemble
    from trainables.eval.inference import predict_images

    study_file = tiny_study(project, name="seeds", num_samples=3, max_epochs=1, grace=1)
    assert main(["start", str(study_file)]) == 0
    args = ["promote", "seeds", "--trials", "2", "--seeds", "2", "--epochs", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mean valid MRE" in out and "top two" in out
    folder = project / "studies" / "seeds"
    assert len(list((folder / "candidates").glob("trial-*-seed-*.yaml"))) == 4
    metrics = json.loads((folder / "final" / "test_metrics.json").read_text())
    first, second = metrics["selection"]["candidates"]
    assert len(first["valid_mre_mm"]) == len(second["valid_mre_mm"]) == 2
    assert first["mean_valid_mre_mm"] == pytest.approx(np.mean(first["valid_mre_mm"]))
    assert first["mean_valid_mre_mm"] <= second["mean_valid_mre_mm"]
    assert first["ci95_mm"] > 0 and second["ci95_mm"] > 0
    top = metrics["selection"]["top_two"]
    assert top["trials"] == [first["trial"], second["trial"]] and top["images"] >= 1
    assert top["test"] in ("wilcoxon signed-rank", "paired t-test")
    promoted = yaml.safe_load((folder / "best.yaml").read_text())
    study = optuna.load_study(study_name="seeds", storage=optuna_url(project))
    assert promoted["lr"] == study.trials[first["trial"]].params["lr"]
    client = MlflowClient(mlflow_url(project))
    run = client.get_run(client.get_model_version_by_alias("seeds", "champion").run_id)
    assert run.data.metrics["selection_rank1_mean_valid_mre_mm"] == pytest.approx(
        first["mean_valid_mre_mm"]
    )
    assert main(["report", "seeds"]) == 0
    html = (folder / "report" / "report.html").read_text()
    assert "Selection (valid)" in html and f"top two, {top['test']}" in html

    assert main(["promote", "seeds", "--ensemble", "2", "--epochs", "1"]) == 0
    assert "Promoted an ensemble of trials" in capsys.readouterr().out
    metrics = json.loads((folder / "final" / "test_metrics.json").read_text())
    assert len(metrics["ensemble"]) == 2 and metrics["checkpoint"] == "ensemble"
    model, meta = load_registered(Tracking(Layout.here()), metrics["model_uri"])
    assert isinstance(model, Ensemble) and len(meta.ensemble) == 2
    images = sorted(Path(promoted["data_dir"]).glob("test/Cephalograms/*.png"))[:2]
    merged = predict_images(model, images, meta.image_size)
    each = [predict_images(m, images, size) for m, size, _ in model.parts()]
    np.testing.assert_allclose(merged, np.mean(each, axis=0), atol=1e-5)
    # The ensemble serves as a pyfunc too (an image as the server receives it).
    import base64

    import mlflow.pyfunc
    import pandas as pd

    with Tracking(Layout.here()).active():
        served = mlflow.pyfunc.load_model(metrics["model_uri"])
    rows = pd.DataFrame([{"image": base64.b64encode(images[0].read_bytes()).decode()}])
    landmarks = served.predict(rows)[0]["landmarks"]
    got = np.array([[p["x"], p["y"]] for p in landmarks.values()])
    np.testing.assert_allclose(got, merged[0], atol=0.006)


def test_promote_of_an_sdr_study_keeps_and_registers_the_epoch_with_the_highest_sdr(
    project, ray_cluster, capsys
):
    """A study of ``sdr_2mm`` (mode max): the final run's ``best.pt`` is its epoch of highest
    valid SDR (``best.yaml`` says so), and that checkpoint is the model tested and registered."""
    import torch

    from search.app.registry import load_registered
    from search.layout import Layout
    from search.records.tracking import Tracking
    from trainables import checkpoint

    study_file = tiny_study(project, name="sdr", num_samples=1, max_epochs=1, grace=1)
    study_file.write_text(study_file.read_text() + "metric: sdr_2mm\n")
    assert main(["start", str(study_file)]) == 0
    assert main(["promote", "sdr", "--epochs", "3"]) == 0
    folder = project / "studies" / "sdr"
    values = yaml.safe_load((folder / "best.yaml").read_text())
    assert (values["best_metric"], values["best_mode"]) == ("sdr_2mm", "max")
    metrics = json.loads((folder / "final" / "test_metrics.json").read_text())
    assert metrics["checkpoint"] == "best.pt"
    client = MlflowClient(mlflow_url(project))
    run_id = client.get_model_version_by_alias("sdr", "champion").run_id
    history = sorted(client.get_metric_history(run_id, "sdr_2mm"), key=lambda m: m.step)
    sdr = [m.value for m in history]
    best = checkpoint.load(folder / "final" / "checkpoints" / "best.pt")
    assert len(sdr) == 3 and best["epoch"] == 1 + sdr.index(max(sdr))
    assert (metrics["epochs"], metrics["tested_epoch"]) == (3, best["epoch"])
    assert f"Trained 3 epochs; tested best.pt at epoch {best['epoch']}" in capsys.readouterr().out
    model, _ = load_registered(Tracking(Layout.here()), metrics["model_uri"])
    for key, weights in model.state_dict().items():
        assert torch.equal(weights, best["model"][key]), key
