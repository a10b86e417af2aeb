"""`evaluate` scores prediction files with the trainable's metric; `data check` gates a dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from search.cli import main
from trainables.data.formats import load_split
from trainables.data.landmarks import AARIZ_SYMBOLS
from trainables.data.synth import SynthSpec, write_dataset
from trainables.eval.predictions import write_prediction


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval") / "synth"
    return write_dataset(SynthSpec(n=8, width=80, height=100, seed=9), root)


def test_evaluate_matches_hand_computed_errors(dataset, tmp_path, capsys):
    records = load_split(dataset, "test", "senior")
    pred = tmp_path / "pred"
    pred.mkdir()
    for r in records:  # every prediction 3 px right and 4 px down: 5 px off
        write_prediction(pred / f"{r.ceph_id}.json", r.ceph_id, r.landmarks + [3, 4], AARIZ_SYMBOLS)
    args = [
        "evaluate",
        "--pred",
        str(pred),
        "--dataset",
        str(dataset),
        "--split",
        "test",
        "--annotator",
        "senior",
    ]
    assert main([*args, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    expected = 5 * np.mean([r.pixel_size for r in records])
    assert scores["mre_mm"] == pytest.approx(expected, rel=1e-6)
    assert scores["images"] == len(records) and scores["unmatched_predictions"] == 0
    assert set(scores["per_landmark"]) == set(AARIZ_SYMBOLS)
    assert main(args) == 0
    assert "MRE" in capsys.readouterr().out


def test_evaluate_refuses_a_missing_prediction(dataset, tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--dataset", str(dataset)]) == 2
    err = capsys.readouterr().err
    assert "no prediction for image" in err and err.count("\n") == 1


def test_data_check_passes_a_clean_set_and_fails_a_broken_one(dataset, tmp_path, capsys):
    assert main(["data", "check", str(dataset), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["counts"] == {"train": 6, "valid": 1, "test": 1}

    broken = write_dataset(SynthSpec(n=4, width=64, height=80, seed=1), tmp_path / "broken")
    (broken / "cephalogram_machine_mappings.csv").unlink()
    assert main(["data", "check", str(broken)]) == 1
    assert "FAILED" in capsys.readouterr().out
