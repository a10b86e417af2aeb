"""Promote a study's best configuration to a final, longer run; test it once; register it.

``studies/NAME/best.yaml`` is the promoted trainable config (``search.py train`` accepts it as
is); ``studies/NAME/final/`` holds the final checkpoints, the test tables and overlays. The final
run is an MLflow run nested under the study's parent run, and its model is registered under the
study's name with the alias ``champion`` when its test MRE beats the current champion's (or there
is none), ``challenger`` otherwise.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import torch
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

import trainables
from search import results, standalone, tracking
from search.storage import study_lock
from trainables import checkpoint
from trainables.config import TrainConfig
from trainables.errors import ConfigError
from trainables.formats import SPLITS
from trainables.heatmap import adaptive_sigma
from trainables.metrics import per_landmark, radial_errors, summarize
from trainables.model import create_model
from trainables.overlay import draw_overlay
from trainables.precision import Precision
from trainables.records import load_split, symbols
from trainables.train import dataset_for, predict

TEST_METRIC = "test_mre_mm"


def guides_epochs(cfg: TrainConfig) -> int:
    """The guides' schedule length: 150 epochs at their slow lr (1e-4), 100 otherwise."""
    return 150 if cfg.lr <= 1e-4 else 100


def ranked(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE trials, best first (a pruned trial never ran its full schedule)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise ConfigError(f"study {study.study_name!r} has no completed trial to promote")
    return sorted(done, key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")


def _write_config(path: Path, values: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=True))
    return path


def promote(
    name: str,
    storage_url: str,
    epochs: int | None = None,
    trials: int = 1,
    train_on: str = "train",
    seed: int | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Re-train the best (of the top ``trials``) configuration and register the model."""
    study = results.load(name, storage_url)
    candidates = ranked(study)[: max(1, trials)]
    folder = Path.cwd() / "studies" / name
    parent = study.user_attrs.get("mlflow_parent_run_id")
    tags = {"mlflow.parentRunId": parent, "cephtune.role": "promote"} if parent else {}
    configs = []
    for trial in candidates:
        values = results.trial_config(study, trial)
        cfg = TrainConfig.from_dict(values, where=f"study {name} trial {trial.number}")
        values["epochs"] = epochs or guides_epochs(cfg)
        values["checkpoint_every"] = 1
        if seed is not None:
            values["seed"] = seed
        configs.append((trial, values))
    final = folder / "final"
    last = final / "checkpoints" / "last.pt"
    if resume and not last.is_file():
        raise ConfigError(f"{last}: no checkpoint to resume the final run from")
    # Hours of training come before the test split is read: check every split's files first
    # (the candidates share the study's data settings).
    for split in SPLITS:
        load_split(cfg.data_dir, split, cfg.annotator, cfg.dataset_format, verify=True)
    with study_lock(name):
        chosen = configs[0]
        if len(configs) > 1:  # a guard against a lucky short run: each gets the full schedule
            scores = []
            for trial, values in configs:
                path = _write_config(folder / "candidates" / f"trial-{trial.number}.yaml", values)
                out = folder / "candidates" / f"trial-{trial.number}"
                found = standalone.train(
                    path, out, None, name, {**tags, "cephtune.role": "recheck"}
                )
                scores.append(found["best"]["mre_mm"])
            chosen = configs[int(np.argmin(scores))]
        trial, values = chosen
        values["train_on"] = train_on
        best_yaml = _write_config(folder / "best.yaml", values)
        trained = standalone.train(
            best_yaml,
            final / "checkpoints",
            last if resume else None,
            name,
            {**tags, "cephtune.promoted_trial": str(trial.number)},
        )
        # Selection on valid is meaningless once valid is trained on: keep the last epoch then.
        pick = "last.pt" if train_on == "train+valid" else "best.pt"
        cfg = TrainConfig.from_dict(values)
        model = create_model(cfg, len(symbols(cfg.dataset_format)))
        model.load_state_dict(checkpoint.load(final / "checkpoints" / pick)["model"])
        report = evaluate_test(model, cfg, final)
        version, alias = register(name, trained["run_id"], model, cfg, report, final)
        report.update(model_uri=f"models:/{name}/{version}", alias=alias, checkpoint=pick)
        (final / "test_metrics.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    return {
        "trial": trial.number,
        "best_yaml": str(best_yaml),
        "final": str(final),
        "run_id": trained["run_id"],
        "version": version,
        "alias": alias,
        **report,
    }


def evaluate_test(model: torch.nn.Module, cfg: TrainConfig, final: Path) -> dict[str, Any]:
    """The test split, once: summary, per-landmark table (CSV, Markdown), three overlays.
    ``model`` is left on the device it was evaluated on (``register`` logs it from the CPU)."""
    test = dataset_for(cfg, "test", augment=False)
    precision = Precision.resolve("fp32")  # on the GPU when there is one; fp32: no autocast
    preds = predict(model.to(precision.device), test, precision, cfg.batch_size)
    truth = np.stack([r.landmarks for r in test.records])
    errors = radial_errors(preds, truth, np.array([r.pixel_size for r in test.records]))
    scores: dict[str, Any] = {**summarize(errors), "images": len(test)}
    table = per_landmark(errors, test.symbols)
    scores["per_landmark"] = table
    final.mkdir(parents=True, exist_ok=True)
    with open(final / "per_landmark.csv", "w", newline="") as f:
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
    (final / "per_landmark.md").write_text("\n".join(lines) + "\n")
    # Overlays of the best, median and worst test image by per-image MRE.
    per_image = np.nanmean(errors, axis=1)
    order = np.argsort(per_image)
    overlays = final / "overlays"
    overlays.mkdir(exist_ok=True)
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
            overlays / f"{label}_{record.ceph_id}.png",
            truth_xy=record.landmarks,
            title=f"{label}: {record.ceph_id} MRE {per_image[index]:.2f} mm",
        )
    return scores


def register(
    name: str,
    run_id: str,
    model: torch.nn.Module,
    cfg: TrainConfig,
    scores: dict[str, Any],
    final: Path,
) -> tuple[str, str]:
    """Log the model to the final run, register it, and give it champion or challenger."""
    uri = tracking.tracking_uri()
    client = MlflowClient(uri)
    metadata = {
        "image_size": cfg.image_size,
        "symbols": list(symbols(cfg.dataset_format)),
        "dataset_format": cfg.dataset_format,
        "annotator": cfg.annotator,
        "stride": int(model.stride),
        "sigma": cfg.sigma if cfg.sigma is not None else adaptive_sigma(cfg.image_size),
        "config": cfg.to_dict(),
    }
    with tracking.active(uri), mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"test_{k}": v for k, v in scores.items() if isinstance(v, float)})
        for table in ("per_landmark.csv", "per_landmark.md"):
            mlflow.log_artifact(str(final / table), artifact_path="test")
        mlflow.log_artifacts(str(final / "overlays"), artifact_path="test/overlays")
        # Pickle format keeps the plain module (with .stride); code_paths ships our model code
        # with it, so the registered model loads wherever torch and timm are installed.
        info = mlflow.pytorch.log_model(
            model.eval().cpu(),
            name="model",
            registered_model_name=name,
            metadata=metadata,
            serialization_format="pickle",
            code_paths=[str(Path(trainables.__file__).parent)],
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "timm", "numpy"],
        )
    version = str(info.registered_model_version)
    alias = "champion"
    try:
        current = client.get_model_version_by_alias(name, "champion")
        best = client.get_run(current.run_id).data.metrics.get(TEST_METRIC)
        if best is not None and best <= scores["mre_mm"]:
            alias = "challenger"
    except MlflowException:
        pass  # no champion yet
    client.set_registered_model_alias(name, alias, version)
    return version, alias
