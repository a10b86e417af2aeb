"""Checkpoints that carry what is needed to re-run them: resolved config, versions, commit;
saved atomically, loaded without running code, and a model rebuilt from one.

Their file names, the keys other modules read and which epoch is kept are
``trainables.artifacts``'.
"""

from __future__ import annotations

import functools
import os
import pickle
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from trainables.artifacts import CONFIG, WEIGHTS
from trainables.config import TrainConfig
from trainables.data.formats import symbols
from trainables.errors import ConfigError
from trainables.models import create_model


def provenance(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config, library versions and the git commit of the code."""
    import numpy
    import timm

    return {
        CONFIG: dict(config),
        "versions": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "timm": str(timm.__version__),
            "numpy": str(numpy.__version__),
        },
        "git_commit": git_commit(),
    }


@functools.cache
def git_commit() -> str | None:
    """HEAD of the checkout this code runs from; None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def save(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: a checkpoint can hold tensors and plain data only."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{path}: checkpoint not found") from None
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as e:
        raise ConfigError(f"{path}: not a readable checkpoint ({e.__class__.__name__})") from None


def rebuild(cfg: TrainConfig, path: Path) -> torch.nn.Module:
    """The network of ``cfg`` with the weights of the checkpoint at ``path``, on the CPU, in
    eval mode."""
    model = create_model(cfg, len(symbols(cfg.dataset_format, cfg.data_dir)))
    model.load_state_dict(load(path)[WEIGHTS])
    return model.eval()
