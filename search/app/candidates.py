"""Robust selection at promotion: the top trials re-trained with the full schedule, each with
several seeds, ranked by mean valid MRE, with a 95 % interval per candidate and a paired
per-image test between the top two (Aariz's 150 valid images and its heavy tails make a single
run's ranking noisy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from search.app.train import train
from search.layout import Layout
from search.records.lineage import TAG_ROLE
from search.records.tracking import Tracking
from trainables import checkpoint
from trainables.artifacts import BEST_CHECKPOINT
from trainables.config import TrainConfig
from trainables.eval.inference import errors_mm
from trainables.precision import Precision
from trainables.run import dataset_for


@dataclass
class Candidate:
    """One configuration (a study trial) and its re-training runs, one per seed."""

    trial: int
    values: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)  # seed, folder, mre_mm, run_id

    @property
    def scores(self) -> np.ndarray:
        return np.array([run["mre_mm"] for run in self.runs])

    @property
    def mean(self) -> float:
        return float(self.scores.mean())

    def interval(self) -> float | None:
        """Half-width of the 95 % t-interval of the mean valid MRE; None with one seed."""
        n = len(self.runs)
        if n < 2:
            return None
        from scipy import stats

        return float(stats.t.ppf(0.975, n - 1) * self.scores.std(ddof=1) / math.sqrt(n))

    def best_run(self) -> dict[str, Any]:
        return min(self.runs, key=lambda run: run["mre_mm"])

    def model(self, run: dict[str, Any] | None = None):
        """The network of ``run`` (default: the best seed's) at its best valid epoch (by the
        config's ``CheckpointPolicy``), on CPU."""
        run = run or self.best_run()
        cfg = TrainConfig.from_dict({**self.values, "seed": run["seed"]})
        return checkpoint.rebuild(cfg, Path(run["folder"]) / BEST_CHECKPOINT)


def retrain(
    layout: Layout,
    name: str,
    tracking: Tracking,
    tags: dict[str, str],
    configs: list[tuple[int, dict[str, Any]]],
    seeds: int,
) -> list[Candidate]:
    """Train every configuration with ``seeds`` seeds (its own seed, then the next ones);
    returns the candidates best first (lowest mean valid MRE)."""
    folder = layout.candidates_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for trial, values in configs:
        candidate = Candidate(trial, values)
        for k in range(seeds):
            seed = int(values.get("seed", 0)) + k
            stem = f"trial-{trial}" if seeds == 1 else f"trial-{trial}-seed-{seed}"
            path = folder / f"{stem}.yaml"
            path.write_text(yaml.safe_dump({**values, "seed": seed}, sort_keys=True))
            out = train(path, folder / stem, None, name, tracking, {**tags, TAG_ROLE: "recheck"})
            candidate.runs.append(
                {"seed": seed, "folder": str(folder / stem), "mre_mm": out["best"]["mre_mm"],
                 "run_id": out["run_id"]}
            )  # fmt: skip
        found.append(candidate)
    return sorted(found, key=lambda c: c.mean)


def per_image_valid_mre(candidate: Candidate) -> np.ndarray:
    """Each valid image's MRE (mm), averaged over the candidate's seeds."""
    cfg = TrainConfig.from_dict(candidate.values)
    valid = dataset_for(cfg, "valid", augment=False)
    precision = Precision.for_inference(cfg.precision)
    per_seed = [
        np.nanmean(errors_mm(candidate.model(run), valid, precision, 4), 1)
        for run in candidate.runs
    ]
    return np.mean(per_seed, axis=0)


def paired_test(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Wilcoxon signed-rank test of per-image errors ``a`` vs ``b`` (the same images); a paired
    t-test where scipy lacks it. ``p_value`` is two-sided; NaN when the two never differ."""
    from scipy import stats

    diff = a - b
    out: dict[str, Any] = {"images": int(len(diff)), "mean_difference_mm": float(diff.mean())}
    if not np.any(diff != 0):
        return {**out, "test": "wilcoxon signed-rank", "statistic": math.nan, "p_value": math.nan}
    try:
        result = stats.wilcoxon(a, b)
        name = "wilcoxon signed-rank"
    except ValueError:  # too few images for the signed-rank test
        result = stats.ttest_rel(a, b)
        name = "paired t-test"
    return {**out, "test": name, "statistic": float(result.statistic),
            "p_value": float(result.pvalue)}  # fmt: skip


def selection_report(ranked: list[Candidate]) -> dict[str, Any]:
    """Per candidate: seeds, valid MREs, their mean and 95 % interval; and the paired per-image
    test between the top two (on valid, where they were chosen)."""
    report: dict[str, Any] = {
        "candidates": [
            {
                "trial": c.trial,
                "seeds": [run["seed"] for run in c.runs],
                "valid_mre_mm": [float(s) for s in c.scores],
                "mean_valid_mre_mm": c.mean,
                "ci95_mm": c.interval(),
            }
            for c in ranked
        ]
    }
    if len(ranked) >= 2:
        first, second = ranked[0], ranked[1]
        test = paired_test(per_image_valid_mre(first), per_image_valid_mre(second))
        report["top_two"] = {"trials": [first.trial, second.trial], **test}
    return report


def selection_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The selection report as MLflow metrics of the final run."""
    metrics = {}
    for rank, c in enumerate(report["candidates"], start=1):
        metrics[f"selection_rank{rank}_mean_valid_mre_mm"] = c["mean_valid_mre_mm"]
        if c["ci95_mm"] is not None:
            metrics[f"selection_rank{rank}_ci95_mm"] = c["ci95_mm"]
    top = report.get("top_two")
    if top and math.isfinite(top["p_value"]):
        metrics["selection_top_two_p_value"] = top["p_value"]
    return metrics
