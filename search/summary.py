"""What a finished (or interrupted) study prints: best trial, baseline, where to look."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from search import datasets, results, tracking
from search.storage import mask_url, resolve_url
from search.study import Study


def _tool(name: str) -> str:
    """The path of a console script installed beside this Python, else its bare name."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def summary(study: Study, data_root: Path, complete: bool) -> int:
    """What a finished (or interrupted) study prints: best trial, baseline, where to look."""
    if not complete:
        print(
            f"Study {study.name!r} stopped before it finished; continue it with: "
            f"python search.py resume {study.name}",
            file=sys.stderr,
        )
        return 130
    ot_study = results.load(study.name, study.storage)
    counts = results.status(ot_study)["states"]
    if not data_root.is_dir():  # generated data whose cache folder was cleared meanwhile
        data_root = datasets.prepare(study.dataset)
    baseline = datasets.mean_shape_baseline(
        data_root, study.dataset.annotator, study.dataset.loader_format
    )
    unit = " mm" if study.metric.endswith("_mm") else ""
    print()
    print(
        f"Study {study.name!r}: {study.num_samples} trials finished "
        f"({', '.join(f'{k.lower()} {v}' for k, v in counts.items())})."
    )
    ratio = ""
    if counts.get("COMPLETE", 0):
        found = results.best(ot_study)
        print(f"Best trial #{found['trial']}: {study.metric} = {found['value']:.3f}{unit}")
        print("  config: " + json.dumps(found["params"], sort_keys=True))
        if study.metric == "mre_mm":
            ratio = f" -> best is {baseline / found['value']:.2f}x lower"
    else:  # a finished study, not an error: ASHA stopped or errors ended every trial early
        print(
            f"No trial ran all {study.max_epochs} epochs, so there is no best trial: "
            "raise num_samples or asha.grace_period, or see the failed trials' fail_reason."
        )
    print(f"Mean-shape baseline (train-set mean position, valid split): {baseline:.3f} mm{ratio}")
    storage = mask_url(resolve_url(study.storage))
    print("Look at it:")
    print(
        f"  optuna-dashboard: {_tool('optuna-dashboard')} {shlex.quote(storage)} "
        "--host 127.0.0.1 --port 8080"
    )
    print(
        f"  MLflow UI:        {_tool('mlflow')} ui --backend-store-uri "
        f"{shlex.quote(mask_url(tracking.tracking_uri()))} --host 127.0.0.1 --port 5000"
    )
    return 0
