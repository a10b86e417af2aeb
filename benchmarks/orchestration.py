"""Orchestration overhead: the same N trials x E epochs through `search.py start` vs a plain loop.

(a) runs `python search.py start` in a subprocess on a scratch project (a fresh local Ray, Optuna
sqlite, MLflow sqlite, per-epoch reports and the default checkpoints), one trial at a time on one
core (the driver and Ray keep the other) and ASHA's grace period at E, so that no trial stops
early. (b) calls `trainables.train.run_training` in this process on the very configurations (a)
sampled, one after another, on one thread, with a report that does nothing. (a) and (b)
alternate; medians are compared.

The Optuna timestamps split (a): the first trial carries the one-off costs (its worker process
imports torch and timm), so the per-trial overhead is measured on trials 2..N:
(second trial start -> last trial end - b's trials 2..N) / (N - 1). Start-up is everything else
that (a) spends beyond b's work: launch -> second trial start, minus b's first trial, plus last
trial end -> exit (imports, Ray, the records, the first worker's imports, tear-down).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from common import finish, header, median, parser, spread

REPO = Path(__file__).resolve().parents[1]

SPACE = """\
params:
  lr: {type: float, low: 1.0e-3, high: 3.0e-3, log: true}
  loss: {type: categorical, choices: [adaptive_wing, heatmap]}
fixed:
  model: hrnet
  backbone: hrnet_w18_small
  image_size: 64
  batch_size: 4
  warmup_epochs: 0
"""

STUDY = """\
name: {name}
dataset: {{format: synthetic, n: 12, size: [80, 100], seed: 3}}
space: space.yaml
num_samples: {trials}
max_epochs: {epochs}
asha: {{grace_period: {epochs}, reduction_factor: 2}}
resources: {{cpu: 1}}
max_concurrent_trials: 1
seed: 0
"""


def run_study(project: Path, name: str, trials: int, epochs: int) -> dict:
    """One `search.py start` in a subprocess; its wall time split by the Optuna timestamps."""
    import optuna

    (project / "space.yaml").write_text(SPACE)
    name = f"{name}-{len(list(project.glob('*.yaml')))}"  # a new study each time: no --fresh
    study_file = project / f"{name}.yaml"
    study_file.write_text(STUDY.format(name=name, trials=trials, epochs=epochs))
    launched = dt.datetime.now()
    done = subprocess.run(
        [sys.executable, str(REPO / "search.py"), "start", str(study_file)],
        cwd=project,
        capture_output=True,
        text=True,
    )
    exited = dt.datetime.now()
    if done.returncode != 0:
        sys.exit(f"search.py start failed ({done.returncode}):\n{done.stderr[-3000:]}")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{project}/studies/optuna.db")
    ordered = sorted(study.trials, key=lambda t: t.datetime_start)
    last = max(t.datetime_complete for t in ordered)
    second = ordered[min(1, len(ordered) - 1)].datetime_start  # the warm-up runs one trial
    return {
        "total": (exited - launched).total_seconds(),
        "to_first": (ordered[0].datetime_start - launched).total_seconds(),
        "to_second": (second - launched).total_seconds(),
        "rest": (last - second).total_seconds(),
        "teardown": (exited - last).total_seconds(),
        "configs": [{**study.user_attrs["constants"], **t.params} for t in ordered],
    }


def run_loop(configs: list[dict]) -> list[float]:
    """The same trials as a plain loop over the training function; seconds per trial."""
    from trainables.config import TrainConfig
    from trainables.train import run_training

    times = []
    for config in configs:
        start = time.perf_counter()
        run_training(TrainConfig.from_dict(config), lambda metrics, state: None)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=None, help="N (default 8; smoke 2)")
    p.add_argument("--epochs", type=int, default=None, help="E (default 3; smoke 1)")
    args = p.parse_args()
    trials = max(2, args.trials or (2 if args.smoke else 8))
    epochs = args.epochs or (1 if args.smoke else 3)
    repeats = args.repeats or (1 if args.smoke else 3)
    header(f"orchestration overhead: {trials} trials x {epochs} epochs, {repeats} repeats")
    with tempfile.TemporaryDirectory(prefix="cephtune-bench-") as tmp:
        project = args.workdir or Path(tmp)
        project.mkdir(parents=True, exist_ok=True)
        os.environ["CEPHTUNE_CACHE_DIR"] = str(project / "cache")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if not args.smoke:  # untimed: the data, the preprocessing cache, this process's imports
            run_loop(run_study(project, "warm-up", 1, 1)["configs"])
        a: list[dict] = []
        b: list[list[float]] = []
        for i in range(repeats):
            a.append(run_study(project, "overhead", trials, epochs))
            b.append(run_loop(a[-1]["configs"]))
            print(
                f"repeat {i + 1}: search.py start {a[-1]['total']:.1f} s (launch to first trial "
                f"{a[-1]['to_first']:.1f}, to second {a[-1]['to_second']:.1f}, last trial to "
                f"exit {a[-1]['teardown']:.1f}); plain loop {sum(b[-1]):.1f} s",
                flush=True,
            )
    per_trial = [
        (run["rest"] - sum(loop[1:])) / (trials - 1) for run, loop in zip(a, b, strict=True)
    ]
    startup = [run["to_second"] - loop[0] + run["teardown"] for run, loop in zip(a, b, strict=True)]
    total = [run["total"] for run in a]
    loops = [sum(loop) for loop in b]
    print(
        textwrap.dedent(
            f"""\
            seconds, median [min-max] over {repeats} repeats
              (a) search.py start          {spread(total)}
                  launch to first trial    {spread([run["to_first"] for run in a])}
                  launch to second trial   {spread([run["to_second"] for run in a])}
                  last trial to exit       {spread([run["teardown"] for run in a])}
              (b) plain training loop      {spread(loops)}
                  its first trial          {spread([loop[0] for loop in b])}
              trials 2..N per trial: (a)   {spread([run["rest"] / (trials - 1) for run in a])}
                                     (b)   {spread([sum(loop[1:]) / (trials - 1) for loop in b])}
              per-trial overhead           {spread(per_trial)}   target <= 0.5
              start-up (one-off)           {spread(startup)}   target <= 8"""
        )
    )
    finish(
        overhead_s_per_trial=median(per_trial),
        startup_s=median(startup),
        a_over_b=median(total) / median(loops),
    )


if __name__ == "__main__":
    main()
