"""Radial error, MRE and SDR in millimetres.

The radial error of a landmark is the distance between the predicted and the true point in
original-image pixels (any resize or letterbox undone) times that image's pixel size; MRE is
their mean (with its SD), SDR@z the share of errors within z mm for z in 2, 2.5, 3 and 4 mm. A
landmark missing from an annotation is left out of every figure (and counted), never scored at
(0, 0). The formats' pixel sizes: trainables/data/aariz.md, trainables/data/isbi.md.
"""

from __future__ import annotations

import numpy as np

SDR_THRESHOLDS_MM = (2.0, 2.5, 3.0, 4.0)


def sdr_key(threshold: float) -> str:
    return "sdr_" + f"{threshold:g}".replace(".", "_") + "mm"


def radial_errors(pred_px: np.ndarray, true_px: np.ndarray, pixel_size: np.ndarray) -> np.ndarray:
    """(N, K) errors in mm from (N, K, 2) original-image pixels and (N,) mm per pixel.

    A landmark missing from the annotation (NaN) stays NaN: it is excluded, never scored.
    """
    dist = np.linalg.norm(np.asarray(pred_px, float) - np.asarray(true_px, float), axis=-1)
    return dist * np.asarray(pixel_size, float)[:, None]


def summarize(errors_mm: np.ndarray) -> dict[str, float]:
    """MRE, its SD, SDR at 2/2.5/3/4 mm and the count of excluded (missing) landmarks."""
    valid = errors_mm[np.isfinite(errors_mm)]
    if valid.size == 0:
        raise ValueError("no annotated landmark to score")
    out = {"mre_mm": float(valid.mean()), "mre_sd_mm": float(valid.std())}
    for t in SDR_THRESHOLDS_MM:
        out[sdr_key(t)] = float((valid <= t).mean())
    out["missing_landmarks"] = int(errors_mm.size - valid.size)
    return out


def per_landmark(errors_mm: np.ndarray, symbols: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """MRE, SD and SDR@2mm of each landmark over the images where it is annotated."""
    out = {}
    for k, symbol in enumerate(symbols):
        column = errors_mm[:, k]
        column = column[np.isfinite(column)]
        if column.size == 0:
            continue
        out[symbol] = {
            "mre_mm": float(column.mean()),
            "sd_mm": float(column.std()),
            "sdr_2mm": float((column <= 2.0).mean()),
            "n": int(column.size),
        }
    return out
