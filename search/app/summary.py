"""What a finished (or interrupted) study prints: best trial, baseline, where to look."""

from __future__ import annotations

import json
import shlex
import sys
from collections import Counter
from pathlib import Path

from search.layout import mask_url
from search.records import ranking, trials
from search.records.storage import open_study
from search.run.lifecycle import Outcome


def _tool(name: str) -> str:
    """The path of a console script installed beside this Python, else its bare name."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _mlflow_ui(uri: str) -> str:
    """Where to look at the runs: a tracking server's own page, else ``mlflow ui`` on the store
    (``mlflow ui --backend-store-uri`` takes a database URL, never an http one)."""
    if uri.startswith(("http://", "https://")):
        return f"{mask_url(uri)} (the MLflow tracking server)"
    return (
        f"{_tool('mlflow')} ui --backend-store-uri {shlex.quote(mask_url(uri))} "
        "--host 127.0.0.1 --port 5000"
    )


def early_stopping_line(spec, study, pruned: int) -> str:
    """What ASHA did: its rungs, how many trials it stopped, and what its probes found."""
    from search.run.early_stopping import RECORD_KEY

    rungs = spec.asha.rungs(spec.max_epochs)
    where = (
        f"rungs at {', '.join(map(str, rungs))} epochs after warmup"
        if rungs
        else f"no rung before the last epoch (max_epochs {spec.max_epochs})"
    )
    text = f"Early stopping: {where}, {pruned} trials stopped"
    state = study.user_attrs.get(RECORD_KEY) or {}
    for rung, seen in sorted(state.get("probes", {}).items(), key=lambda kv: int(kv[0])):
        verdict = (
            "widened: it stopped no trial after that"
            if int(rung) in state.get("widened", [])
            else "kept"
        )
        text += (
            f"; rung {rung}: {seen['mistakes']} of the {seen['probes']} stops its probes tested "
            f"were mistakes ({verdict})"
        )
    return text + "."


def summary(outcome: Outcome) -> int:
    """What a finished (or interrupted) study prints: best trial, baseline, where to look."""
    study, layout = outcome.spec, outcome.layout
    if not outcome.complete:
        print(
            f"Study {study.name!r} stopped before it finished; continue it with: "
            f"python search.py resume {study.name}",
            file=sys.stderr,
        )
        return 130
    storage = layout.url(study.storage)
    ot_study = open_study(study.name, storage, f"{study.path}: storage")
    done = trials.finished(ot_study)
    counts = Counter(t.state.name.lower() for t in done)
    interrupted = [t.number for t in ot_study.trials if trials.interrupted(t)]
    baseline = ot_study.user_attrs.get(trials.BASELINE)  # recorded by start
    unit = f" {trials.unit(study.metric)}".rstrip()
    print()
    print(
        f"Study {study.name!r}: {len(done)} trials finished "
        f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})."
    )
    if interrupted:
        print(
            f"  {len(interrupted)} more (#{', #'.join(map(str, interrupted))}) were running when "
            "the driver stopped and could not be continued: marked FAIL (interrupted) and replaced."
        )
    ratio = ""
    if counts.get("complete", 0):
        found = ranking.best(ot_study)
        print(f"Best trial #{found['trial']}: {study.metric} = {found['value']:.3f}{unit}")
        print("  config: " + json.dumps(found["params"], sort_keys=True))
        if study.metric == "mre_mm" and baseline is not None:
            ratio = f" -> best is {trials.against_baseline(found['value'], baseline)}"
    else:  # a finished study, not an error: ASHA stopped or errors ended every trial early
        print(
            f"No trial ran all {study.max_epochs} epochs, so there is no best trial: "
            "raise num_samples or asha.grace_period, or see the failed trials' fail_reason."
        )
    if baseline is not None:
        print(
            f"Mean-shape baseline (train-set mean position, valid split): {baseline:.3f} mm{ratio}"
        )
    if study.asha is not None:
        print(early_stopping_line(study, ot_study, counts.get("pruned", 0)))
    print("Look at it:")
    print(
        f"  optuna-dashboard: {_tool('optuna-dashboard')} {shlex.quote(mask_url(storage))} "
        "--host 127.0.0.1 --port 8080"
    )
    print(f"  MLflow UI:        {_mlflow_ui(layout.tracking_uri())}")
    return 0
