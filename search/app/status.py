"""What ``status`` prints of a study: counts against its budget, the running trials with their
epochs, the best so far with its unit, the epochs run and left with an ETA; once, or watched."""

from __future__ import annotations

import json
import sys
import time

import optuna

from search.records import ranking
from search.records.trials import duration


def show(study: optuna.Study, as_json: bool, watch: float | None) -> int:
    """Print ``ranking.status`` of ``study`` (as JSON with ``as_json``); with ``watch``, again
    every ``watch`` seconds until the study has all its trials or Ctrl-C. Exit code 0."""
    try:
        while True:
            info = ranking.status(study)
            if as_json:
                print(json.dumps(info, sort_keys=True), flush=True)
            else:
                if watch is not None and sys.stdout.isatty():
                    print("\x1b[H\x1b[2J", end="")  # the terminal redrawn from the top
                print("\n".join(status_lines(info)), flush=True)
            ended = not info["running"] and len_finished(info) >= (info["num_samples"] or 0)
            if watch is None or ended:
                return 0
            time.sleep(watch)
            if not sys.stdout.isatty() and not as_json:
                print()
    except KeyboardInterrupt:  # how a watch ends
        return 0


def len_finished(info: dict) -> int:
    """Trials of ``info`` (``ranking.status``) that ended on their own."""
    ended = sum(info["states"].get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))
    return ended - info["interrupted"]


def status_lines(info: dict) -> list[str]:
    """What ``status`` prints of ``ranking.status``'s ``info``."""
    unit = f" {info['unit']}" if info["unit"] else ""
    states = ", ".join(f"{k.lower()} {v}" for k, v in info["states"].items()) or "none"
    of = f" of {info['num_samples']}" if info["num_samples"] else ""
    lines = [f"study {info['study']}: {info['trials']} trials ({states}){of}"]
    if info["interrupted"]:
        lines.append(
            f"  {info['interrupted']} of the failed were running when a driver stopped: "
            "interrupted and replaced"
        )
    metric = info["metric"]
    for run in info["running"]:
        value = "" if run[metric] is None else f", {metric} {run[metric]:.4g}{unit}"
        lines.append(
            f"  running #{run['trial']}: epoch {run['epochs']}/{info['max_epochs']}{value}"
        )
    if info["best"]:
        value = info["best"]["value"]
        lines.append(f"best so far: trial #{info['best']['trial']} {metric} {value:.4f}{unit}")
    if info["epochs_left_at_most"] is not None:
        eta = "" if info["eta_s"] is None else f"; ETA at most {duration(info['eta_s'])}"
        lines.append(
            f"epochs: {info['epochs_run']} run, at most {info['epochs_left_at_most']} left{eta}"
        )
    return lines
