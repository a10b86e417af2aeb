"""A study on a dataset in the CSV format with landmarks of its own: start, promote, predict and
evaluate, each with the dataset's names."""

from __future__ import annotations

import json

import pytest

from search.cli import main
from tests.helpers import TINY_SPACE, write
from tests.trainables.data.test_declared_formats import three_landmarks
from trainables.data.synth import SynthSpec, write_dataset

pytestmark = pytest.mark.study

STUDY = """\
name: mine
dataset: {format: csv, root: data}
space: space.yaml
num_samples: 2
max_epochs: 1
asha: {grace_period: 1, reduction_factor: 2}
resources: {cpu: 1}
max_concurrent_trials: 1
"""


def test_a_csv_study_learns_predicts_and_scores_its_own_landmarks(project, ray_cluster, capsys):
    source = write_dataset(SynthSpec(n=12, width=80, height=100, seed=2), project / "src")
    three_landmarks(source, project / "made").rename(project / "data")
    write(project / "space.yaml", TINY_SPACE)
    assert main(["start", str(write(project / "mine.yaml", STUDY))]) == 0
    assert main(["promote", "mine", "--epochs", "1"]) == 0
    final = json.loads((project / "studies/mine/final/test_metrics.json").read_text())
    assert set(final["per_landmark"]) == {"Sella", "Nasion", "Menton"}

    images = project / "data" / "images" / "test"
    out = project / "pred"
    assert main(["predict", "--model", "models:/mine@champion", str(images), "--out", str(out),
                 "--pixel-size", "1"]) == 0  # fmt: skip
    pred = json.loads(next(out.glob("*.json")).read_text())
    assert [m["symbol"] for m in pred["landmarks"]] == ["Sella", "Nasion", "Menton"]
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(out), "--dataset", str(project / "data"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["images"] == 2 and scores["mre_mm"] == pytest.approx(final["mre_mm"], rel=0.05)
