"""The study report: one self-contained HTML page built from an Optuna storage (no Ray)."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from PIL import Image

from search.app.report import write_report
from search.layout import Layout
from search.records.trials import FAIL_REASON, INTERRUPTED
from trainables.errors import ConfigError

NAME = "rep"
DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-2, log=True),
    "loss": CategoricalDistribution(["heatmap", "<b>wing</b>"]),
}
SPEC = {"name": NAME, "metric": "mre_mm", "mode": "min", "num_samples": 4, "max_epochs": 3}


def text_of(page: str) -> str:
    """The page's visible text, whitespace collapsed, for phrase assertions."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


START = datetime(2026, 12, 1, 9, 0, 0)


def add(
    study: optuna.Study, state: TrialState, curve: list[float], seconds: int = 0, **kwargs
) -> None:
    """A trial of ``state`` with one value per epoch, ``seconds`` long from ``START``."""
    params = kwargs.pop("params", {"lr": 1e-3, "loss": "heatmap"})
    trial = create_trial(
        state=state,
        params=params,
        distributions={k: DISTRIBUTIONS[k] for k in params},
        intermediate_values={epoch: v for epoch, v in enumerate(curve, start=1)},
        **kwargs,
    )
    if seconds:
        trial.datetime_start, trial.datetime_complete = START, START + timedelta(seconds=seconds)
    study.add_trial(trial)


@pytest.fixture
def url(project) -> str:
    """A sqlite storage in the scratch project folder (``project`` is the current directory)."""
    return f"sqlite:///{project / 'optuna.db'}"


@pytest.fixture
def study(url) -> optuna.Study:
    """4 samples × 3 epochs = 12; epochs run 3 + 3 + 1 + 0 + 0 = 7, so 5/12 = 42% saved."""
    study = optuna.create_study(study_name=NAME, storage=url, direction="minimize")
    study.set_user_attr("spec", SPEC)
    study.set_user_attr("metric", "mre_mm")
    study.set_user_attr("constants", {"backbone": "hrnet_w18_small", "image_size": 64})
    study.set_user_attr("mean_shape_mre_mm", 6.5)  # what start records
    add(study, TrialState.COMPLETE, [3.0, 2.5, 2.25], 185, value=2.25)
    add(
        study,
        TrialState.COMPLETE,
        [2.75, 2.0, 1.625],
        195,
        value=1.625,
        params={"lr": 3e-3, "loss": "<b>wing</b>"},
    )
    add(study, TrialState.PRUNED, [3.5], 61, value=3.5, params={"lr": 2e-4, "loss": "heatmap"})
    add(study, TrialState.FAIL, [], user_attrs={FAIL_REASON: "nan_loss: <script>x</script>"})
    add(study, TrialState.FAIL, [], user_attrs={FAIL_REASON: INTERRUPTED})
    return study


def test_report_of_a_finished_study(study, url, project):
    path = write_report(Layout.here(), NAME, url)
    assert path == project / "studies" / NAME / "report" / "report.html"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page and "<script" not in page
    text = text_of(page)
    assert "Study rep" in text and "mre_mm (min)" in text
    assert "Best trial #1 : mre_mm = 1.625 mm (4.00x lower; the mean-shape baseline below)" in text
    assert "Mean-shape baseline (every landmark at its train-set mean position" in text
    assert "6.5 mm ; a model has to beat it" in text
    assert "backbone hrnet_w18_small" in text  # the full config: constants + params
    for label, count in [("completed", 2), ("pruned", 1), ("failed", 1), ("interrupted", 1)]:
        assert f"{label} {count}" in text
    assert "nan_loss: &lt;script&gt;x&lt;/script&gt; (trial #3)" in page
    assert "&lt;b&gt;wing&lt;/b&gt;" in page and "<b>wing</b>" not in page
    assert "Epochs run: 7 of 12" in text and "42% saved" in text
    # the trial table, best first: #1 (1.625), #0 (2.25), #2 (pruned, 3.5), then the failures
    table = page[page.index("All trials, best first") :]
    assert "<th>mre_mm (mm)</th><th>epochs</th><th>duration</th>" in table  # the unit
    row = r"<tr><td>(\d+)</td><td>(\w+)</td><td>[^<]*</td><td>(\d+)</td><td>([^<]*)</td>"
    assert re.findall(row, table) == [
        ("1", "completed", "3", "3m15s"),
        ("0", "completed", "3", "3m05s"),
        ("2", "pruned", "1", "1m01s"),
        ("3", "failed", "0", "0m00s"),
        ("4", "interrupted", "0", "0m00s"),
    ]
    # durations: 185 + 195 + 61 s of trials (the failures took no time here)
    assert "trial time in all 7m21s" in text
    assert "median completed trial (2) 3m10s" in text and "median pruned trial (1) 1m01s" in text
    # curves, parallel coordinates, slices, importances
    assert page.count('src="data:image/png;base64,') == 4
    assert "every trial in grey (log axis)" in text
    assert "Optuna's plots of the 2 completed trials" in text
    # the space the trials sampled, as Optuna searched it
    space = text[text.index("Searched space") :]
    assert "loss one of: heatmap, &lt;b&gt;wing&lt;/b&gt; 5 of 5" in space
    assert "lr float 0.0001 – 0.01, log 5 of 5" in space
    # fANOVA on 2 completed trials is stated as a hint, not a finding
    assert "Only 2 completed trials" in text and "a hint, not a finding" in text
    assert "Not enough completed trials" not in text
    assert "No promoted model yet" in text


def test_report_embeds_the_promoted_model(study, url, project):
    final = project / "studies" / NAME / "final"
    (final / "overlays").mkdir(parents=True)
    metrics = {
        "mre_mm": 1.4375,
        "mre_sd_mm": 0.8125,
        "sdr_2mm": 0.75,
        "sdr_2_5mm": 0.8,
        "sdr_3mm": 0.9,
        "sdr_4mm": 1.0,
        "images": 3,
        "per_landmark": {"Sella": {"mre_mm": 1.25, "sd_mm": 0.5, "sdr_2mm": 0.5, "n": 3}},
        "model_uri": "models:/rep/1",
        "alias": "champion",
        "checkpoint": "best.pt",
        "epochs": 100,
        "tested_epoch": 87,
    }
    (final / "test_metrics.json").write_text(json.dumps(metrics))
    overlay = final / "overlays" / "best_0001.png"
    Image.new("RGB", (4, 3), (200, 30, 30)).save(overlay)
    out = project / "elsewhere"
    page = write_report(Layout.here(), NAME, url, out_dir=out).read_text()
    assert (out / "report.html").is_file()
    text = text_of(page)
    assert "MRE (mm) 1.438" in text and "SDR@2mm 75.0%" in text and "alias champion" in text
    assert "Sella 1.25 0.5 50.0% 3" in text
    assert "epochs trained 100 tested from best.pt (epoch 87, best on valid)" in text
    assert base64.b64encode(overlay.read_bytes()).decode() in page
    assert "best_0001" in text


@pytest.mark.parametrize("failed", [False, True], ids=["no trials", "no finished trial"])
def test_report_of_a_study_without_results(url, project, failed):
    study = optuna.create_study(study_name=NAME, storage=url)
    if failed:
        add(study, TrialState.FAIL, [4.0], user_attrs={FAIL_REASON: "error: ValueError: boom"})
    page = write_report(Layout.here(), NAME, url).read_text()
    text = text_of(page)
    assert "No finished trial yet" in text
    assert "Not enough completed trials" in text
    assert ("failed 1" in text) if failed else ("No trials yet" in text)
    assert "no num_samples and max_epochs" in text  # a study made outside cephtune has no spec


def test_report_of_a_missing_study(url):
    optuna.create_study(study_name="other", storage=url)
    with pytest.raises(ConfigError, match="'missing' not found"):
        write_report(Layout.here(), "missing", url)
