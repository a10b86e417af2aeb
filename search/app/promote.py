"""Promote a study's best configuration to a final, longer run; test it once; register it.

``studies/NAME/best.yaml`` is the promoted trainable config (``search.py train`` accepts it as
is), with the study's metric and mode as the epoch ``best.pt`` keeps; ``studies/NAME/final/``
holds the final checkpoints, the test tables and overlays (``trainables.artifacts.FinalDir``).
The final run is an MLflow run nested under the study's parent run; its model is registered as
``search.app.registry`` describes.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from search.app import candidates as candidates_mod
from search.app import registry
from search.app.train import train
from search.layout import Layout
from search.records import ranking, trials
from search.records.lineage import TAG_ROLE
from search.records.storage import open_study
from search.records.tracking import Tracking
from search.run.lock import study_lock
from trainables import checkpoint
from trainables.artifacts import BEST_CHECKPOINT, CheckpointPolicy, FinalDir, TestMetrics
from trainables.config import TrainConfig
from trainables.data.formats import load_split
from trainables.data.records import SPLITS
from trainables.errors import ConfigError
from trainables.eval.ensemble import Ensemble
from trainables.eval.inference import predict_dataset
from trainables.eval.metrics import per_landmark, radial_errors, summarize
from trainables.eval.overlay import draw_overlay
from trainables.eval.tta import TTA
from trainables.precision import Precision
from trainables.run import dataset_for

# Tags of the runs promote adds to a study's tree (beside lineage's ``cephtune.role``).
TAG_PROMOTED_TRIAL = "cephtune.promoted_trial"  # the trial a final run re-trains
TAG_ENSEMBLE_TRIALS = "cephtune.ensemble_trials"  # the members of an ensemble, comma-separated


def guides_epochs(cfg: TrainConfig) -> int:
    """The guides' schedule length: 150 epochs at their slow lr (1e-4), 100 otherwise."""
    return 150 if cfg.lr <= 1e-4 else 100


def _write_config(path: Path, values: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=True))
    return path


def promote(
    layout: Layout,
    name: str,
    storage_url: str,
    epochs: int | None = None,
    candidates: int = 1,
    train_on: str = "train",
    seed: int | None = None,
    resume: bool = False,
    tta: bool = False,
    seeds: int = 1,
    ensemble: int | None = None,
    compile_model: bool = False,
) -> dict[str, Any]:
    """Re-train the best (of the top ``candidates``, each with ``seeds`` seeds, ranked by mean
    valid MRE) configuration, test it (with test-time augmentation when ``tta``), register it.
    With ``ensemble`` K the top K re-trained candidates, merged, are the model instead.
    ``compile_model``: every final run trains with ``compile: true`` (torch.compile)."""
    if ensemble and train_on != "train":
        raise ConfigError(
            "--ensemble chooses its members on valid: they train on train (leave --train-on out)"
        )
    study = open_study(name, layout.url(storage_url))
    tracking = Tracking(layout, writes=True)
    parent = study.user_attrs.get(trials.MLFLOW_PARENT_RUN_ID)
    tags = {MLFLOW_PARENT_RUN_ID: parent, TAG_ROLE: "promote"} if parent else {}
    best_first = ranking.ranked(study)
    if not best_first:  # a pruned trial never ran its full schedule
        raise ConfigError(f"study {study.study_name!r} has no completed trial to promote")
    configs = []
    for trial in best_first[: max(1, candidates, ensemble or 1)]:
        values = trials.training_config(study, trial)
        cfg = TrainConfig.from_dict(values, where=f"study {name} trial {trial.number}")
        values["epochs"] = epochs or guides_epochs(cfg)
        values["checkpoint_every"] = 1
        if compile_model:
            values["compile"] = True
        if seed is not None:
            values["seed"] = seed
        configs.append((trial, values))
    final = FinalDir(layout.final_dir(name))
    last = final.last
    if resume and not last.is_file():
        raise ConfigError(f"{last}: no checkpoint to resume the final run from")
    # Hours of training come before the test split is read: check every split's files first
    # (the candidates share the study's data settings).
    for split in SPLITS:
        load_split(cfg.data_dir, split, cfg.annotator, cfg.dataset_format, verify=True)
    with study_lock(layout, name):
        chosen, selection = configs[0], None
        if len(configs) > 1 or seeds > 1 or ensemble:
            # A guard against a lucky short run: each gets the full schedule, and the seeds.
            numbered = [(trial.number, values) for trial, values in configs]
            ranked = candidates_mod.retrain(layout, name, tracking, tags, numbered, seeds)
            selection = candidates_mod.selection_report(ranked)
            chosen = next(c for c in configs if c[0].number == ranked[0].trial)
        if ensemble:
            return _promote_ensemble(
                layout, name, tracking, tags, ranked[:ensemble], selection, tta
            )
        trial, values = chosen
        values["train_on"] = train_on
        best_yaml = _write_config(layout.best_yaml(name), values)
        trained = train(
            best_yaml, final.checkpoints, last if resume else None, name, tracking,
            {**tags, TAG_PROMOTED_TRIAL: str(trial.number)},
        )  # fmt: skip
        cfg = TrainConfig.from_dict(values)
        pick = CheckpointPolicy.of(cfg).tested
        model = checkpoint.rebuild(cfg, final.checkpoint(pick))
        report = test_once(model, cfg, final, TTA(flip=cfg.aug_flip) if tta else None)
        if selection is not None:
            report = dataclasses.replace(report, selection=selection)
            tracking.log_metrics(trained["run_id"], candidates_mod.selection_metrics(selection), 0)
        version, alias = registry.register(
            tracking, name, trained["run_id"], model, cfg, report.to_dict(), final.root
        )
        tested_epoch = trained["best"].get("epoch") if pick == BEST_CHECKPOINT else cfg.epochs
        report = dataclasses.replace(
            report,
            model_uri=f"models:/{name}/{version}",
            alias=alias,
            checkpoint=pick,
            epochs=cfg.epochs,
            tested_epoch=tested_epoch,
        )
        report.write(final)
    return {
        "trial": trial.number,
        "best_yaml": str(best_yaml),
        "final": str(final.root),
        "run_id": trained["run_id"],
        "version": version,
        "alias": alias,
        **report.to_dict(),
    }


def _promote_ensemble(
    layout: Layout,
    name: str,
    tracking: Tracking,
    tags: dict[str, str],
    members: list[candidates_mod.Candidate],
    selection: dict[str, Any],
    tta: bool,
) -> dict[str, Any]:
    """Register the merged ``members`` (each its best seed's best valid epoch), tested once."""
    configs = [TrainConfig.from_dict(m.values) for m in members]
    model = Ensemble(
        [m.model() for m in members],
        [cfg.image_size for cfg in configs],
        [cfg.aug_flip for cfg in configs],
    )
    final = FinalDir(layout.final_dir(name))
    trials_used = ",".join(str(m.trial) for m in members)
    run_id = tracking.start_run(
        name, "ensemble", {"ensemble_trials": trials_used},
        {**tags, TAG_ROLE: "ensemble", TAG_ENSEMBLE_TRIALS: trials_used},
    )  # fmt: skip
    report = test_once(model, configs[0], final, TTA(flip=True) if tta else None)
    report = dataclasses.replace(report, selection=selection, ensemble=[m.trial for m in members])
    tracking.log_metrics(run_id, candidates_mod.selection_metrics(selection), 0)
    version, alias = registry.register(
        tracking, name, run_id, model, configs[0], report.to_dict(), final.root
    )
    tracking.end_run(run_id)
    report = dataclasses.replace(
        report, model_uri=f"models:/{name}/{version}", alias=alias, checkpoint="ensemble"
    )
    report.write(final)
    return {"trial": members[0].trial, "best_yaml": "", "final": str(final.root),
            "run_id": run_id, "version": version, "alias": alias,
            **report.to_dict()}  # fmt: skip


def test_once(
    model: torch.nn.Module, cfg: TrainConfig, final: FinalDir, tta: TTA | None = None
) -> TestMetrics:
    """The test split, once: summary, per-landmark table (CSV, Markdown), three overlays.
    ``model`` is left on the device it was evaluated on (``register`` logs it from the CPU)."""
    test = dataset_for(cfg, "test", augment=False)
    precision = Precision.for_inference(cfg.precision)
    preds = predict_dataset(model, test, precision, cfg.batch_size, tta)
    truth = np.stack([r.landmarks for r in test.records])
    errors = radial_errors(preds, truth, np.array([r.pixel_size for r in test.records]))
    table = per_landmark(errors, test.symbols)
    scores = TestMetrics(
        summarize(errors),
        images=len(test),
        tta=tta.describe() if tta is not None else "none",
        per_landmark=table,
    )
    final.root.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = final.tables
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["landmark", "mre_mm", "sd_mm", "sdr_2mm", "n"])
        for symbol, row in table.items():
            writer.writerow(
                [
                    symbol,
                    f"{row['mre_mm']:.4f}",
                    f"{row['sd_mm']:.4f}",
                    f"{row['sdr_2mm']:.4f}",
                    row["n"],
                ]
            )
    lines = ["| landmark | MRE (mm) | SD (mm) | SDR 2 mm | n |", "|---|---|---|---|---|"]
    lines += [
        f"| {s} | {r['mre_mm']:.2f} | {r['sd_mm']:.2f} | {r['sdr_2mm']:.1%} | {r['n']} |"
        for s, r in table.items()
    ]
    md_path.write_text("\n".join(lines) + "\n")
    # Overlays of the best, median and worst test image by per-image MRE.
    per_image = np.nanmean(errors, axis=1)
    order = np.argsort(per_image)
    final.overlays.mkdir(exist_ok=True)
    for label, index in (
        ("best", order[0]),
        ("median", order[len(order) // 2]),
        ("worst", order[-1]),
    ):
        record = test.records[index]
        draw_overlay(
            record.image,
            preds[index],
            test.symbols,
            final.overlay(label, record.ceph_id),
            truth_xy=record.landmarks,
            title=f"{label}: {record.ceph_id} MRE {per_image[index]:.2f} mm",
        )
    return scores
