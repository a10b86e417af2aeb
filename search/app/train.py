"""``search.py train``: one configuration trained without Ray: the same trainable code, a
progress bar, checkpoints, ``--resume`` and MLflow logging. ``promote`` builds on it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from search.records.tracking import Tracking
from search.studyfiles.yamlfile import load_mapping
from trainables import artifacts, checkpoint
from trainables.config import TrainConfig
from trainables.data.formats import load_split
from trainables.errors import ConfigError
from trainables.precision import default_device
from trainables.run import ensure_data
from trainables.train import NonFiniteLoss, State, run_training, should_checkpoint

RESUMABLE_CHANGES = {"epochs"}  # a resumed run may be extended, nothing else
TAG_CONFIG = "cephtune.config"  # the run's config file


def load_config(path: Path) -> TrainConfig:
    """A trainable config YAML (e.g. a promoted ``best.yaml``); ``data_dir`` relative to it."""
    raw = load_mapping(path)
    data_dir = raw.get("data_dir")
    if isinstance(data_dir, str) and data_dir and not Path(data_dir).is_absolute():
        raw["data_dir"] = str((path.parent / data_dir).resolve())
    cfg = TrainConfig.from_dict(raw, where=str(path))
    if not cfg.data_dir:
        raise ConfigError(f"{path}: data_dir is required")
    return cfg


def _check_resume(cfg: TrainConfig, state: dict[str, Any], path: Path) -> None:
    saved = state.get(artifacts.CONFIG, {})
    if saved:  # a key the checkpoint's code did not have yet ran as its default then
        saved = {**TrainConfig().to_dict(), **saved}
    for key, value in cfg.to_dict().items():
        if key not in RESUMABLE_CHANGES and saved.get(key) != value:
            raise ConfigError(
                f"{path}: checkpoint was trained with {key}={saved.get(key)!r}, the config "
                f"says {value!r}; only {', '.join(sorted(RESUMABLE_CHANGES))} may change"
            )
    epoch = state[artifacts.EPOCH]
    if epoch >= cfg.epochs:
        raise ConfigError(f"{path}: checkpoint is at epoch {epoch} of {cfg.epochs}")


def train(
    config: Path,
    out: Path,
    resume: Path | None,
    experiment: str,
    tracking: Tracking,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train ``config`` to the end, logged to ``experiment`` in the ``tracking`` store, keeping
    ``out/last.pt`` and ``out/best.pt`` (the best epoch by the config's ``CheckpointPolicy``);
    returns the best epoch's valid metrics, the metric it was chosen by, and where things are."""
    from tqdm import tqdm

    cfg = load_config(config)
    ensure_data(cfg)
    for split in ("train", "valid", *cfg.train_on.split("+")):  # a broken file fails here,
        load_split(cfg.data_dir, split, cfg.annotator, fmt=cfg.dataset_format, verify=True)
    default_device()  # a GPU that torch cannot use is refused before anything is written
    state = None
    if resume is not None:
        state = checkpoint.load(resume)
        _check_resume(cfg, state, resume)
    out.mkdir(parents=True, exist_ok=True)
    run_id = tracking.start_run(
        experiment,
        config.stem,
        cfg.to_dict(),
        {TAG_CONFIG: str(config.resolve()), **(tags or {})},
    )
    policy = artifacts.CheckpointPolicy.of(cfg)
    last, best_pt = out / artifacts.LAST_CHECKPOINT, out / artifacts.BEST_CHECKPOINT
    # A resumed run keeps best.pt unless it really improves on the checkpoint's best.
    kept = state[artifacts.BEST] if state else None
    best: dict[str, Any] = {policy.metric: kept} if kept is not None else {}
    bar = tqdm(
        total=cfg.epochs,
        initial=state[artifacts.EPOCH] if state else 0,
        unit="epoch",
        file=sys.stderr,
        dynamic_ncols=True,
    )

    def report(metrics: dict[str, Any], state_fn: State) -> None:
        epoch = metrics["epoch"]
        tracking.log_metrics(run_id, metrics, step=epoch)
        improved = policy.improves(metrics, best.get(policy.metric))
        if improved:
            best.clear()
            best.update(metrics)
        if should_checkpoint(cfg, epoch) or improved:
            snapshot = state_fn()
            checkpoint.save(last, snapshot)
            if improved:
                shutil.copyfile(last, best_pt)
        bar.set_postfix(
            loss=f"{metrics['train_loss']:.4f}",
            lr=f"{metrics['lr']:.2e}",
            mre=f"{metrics['mre_mm']:.3f}mm",
        )
        bar.update(1)

    def on_step(loss: float) -> None:
        bar.set_postfix_str(f"loss={loss:.4f}", refresh=False)

    try:
        run_training(cfg, report, state, on_step)
    except NonFiniteLoss as e:
        tracking.end_run(run_id, "FAILED")
        raise ConfigError(f"{config}: training stopped: {e}") from None
    except BaseException:
        tracking.end_run(run_id, "KILLED")
        raise
    finally:
        bar.close()
    tracking.log_artifact(run_id, config)
    tracking.end_run(run_id)
    return {
        "best": best,
        "metric": policy.metric,
        "out": str(out),
        "checkpoints": [str(best_pt), str(last)],
        "run_id": run_id,
    }
