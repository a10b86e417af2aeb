"""MRE and SDR on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainables.eval.metrics import radial_errors, summarize


def test_radial_error_uses_each_images_pixel_size():
    pred = np.array([[[0.0, 0.0]], [[10.0, 10.0]]])
    true = np.array([[[3.0, 4.0]], [[10.0, 30.0]]])
    errors = radial_errors(pred, true, np.array([0.1, 0.139]))
    assert errors[:, 0] == pytest.approx([0.5, 20 * 0.139])


def test_summary_mre_sd_and_sdr_thresholds():
    errors = np.array([[1.0, 2.0, 2.5], [3.0, 4.0, 10.0]])  # mm
    out = summarize(errors)
    assert out["mre_mm"] == pytest.approx(22.5 / 6)
    assert out["mre_sd_mm"] == pytest.approx(np.std([1, 2, 2.5, 3, 4, 10]))
    assert out["sdr_2mm"] == pytest.approx(2 / 6)  # <= 2 mm counts
    assert out["sdr_2_5mm"] == pytest.approx(3 / 6)
    assert out["sdr_3mm"] == pytest.approx(4 / 6)
    assert out["sdr_4mm"] == pytest.approx(5 / 6)
    assert out["missing_landmarks"] == 0


def test_missing_landmark_is_excluded_not_scored_as_origin():
    pred = np.array([[[5.0, 5.0], [5.0, 5.0]]])
    true = np.array([[[5.0, 6.0], [math.nan, math.nan]]])
    out = summarize(radial_errors(pred, true, np.array([1.0])))
    assert out["mre_mm"] == pytest.approx(1.0)
    assert out["missing_landmarks"] == 1


def test_per_landmark_table_skips_unannotated_images():
    from trainables.eval.metrics import per_landmark

    errors = np.array([[1.0, 3.0], [3.0, math.nan]])
    table = per_landmark(errors, ("A", "B"))
    assert table["A"] == {"mre_mm": 2.0, "sd_mm": 1.0, "sdr_2mm": 0.5, "n": 2}
    assert table["B"]["n"] == 1 and table["B"]["mre_mm"] == 3.0
