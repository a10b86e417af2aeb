"""Orchestration overhead: the same N trials x E epochs through `search.py start` vs a plain loop.

(a) runs `python search.py start` in a subprocess on a scratch project (a fresh local Ray, Optuna
sqlite, MLflow sqlite, per-epoch reports and the default checkpoints), one trial at a time with
the trial owning both cores and ASHA's grace period at E, so that no trial stops early. (b) calls
`trainables.train.run_training` in this process on the very configurations (a) sampled, one
after another, with a report that does nothing. (a) and (b) alternate; medians are compared.

(a) runs twice per repeat, with N/4 and N trials: a(n) = S + n (t + o) while b(N) = N t, so the
slope gives the per-trial overhead o and the intercept the one-off start-up S (imports, Ray, the
records, the first trial process's imports of torch and timm, tear-down). The Optuna timestamps
add launch -> first trial and last trial -> exit for the record.
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
resources: {{cpu: 2}}
max_concurrent_trials: 1
seed: 0
"""


def run_study(project: Path, name: str, trials: int, epochs: int) -> dict[str, float]:
    """One `search.py start` in a subprocess; its wall time split by the Optuna timestamps."""
    import optuna

    (project / "space.yaml").write_text(SPACE)
    study_file = project / f"{name}.yaml"
    study_file.write_text(STUDY.format(name=name, trials=trials, epochs=epochs))
    launched = dt.datetime.now()
    done = subprocess.run(
        [sys.executable, str(REPO / "search.py"), "start", str(study_file), "--fresh"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    exited = dt.datetime.now()
    if done.returncode != 0:
        sys.exit(f"search.py start failed ({done.returncode}):\n{done.stderr[-3000:]}")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{project}/studies/optuna.db")
    first = min(t.datetime_start for t in study.trials)
    last = max(t.datetime_complete for t in study.trials)
    return {
        "total": (exited - launched).total_seconds(),
        "startup": (first - launched).total_seconds(),
        "span": (last - first).total_seconds(),
        "teardown": (exited - last).total_seconds(),
        "configs": [{**study.user_attrs["constants"], **t.params} for t in study.trials],
    }


def run_loop(configs: list[dict]) -> float:
    """The same trials as a plain loop over the training function; seconds."""
    from trainables.config import TrainConfig
    from trainables.train import run_training

    start = time.perf_counter()
    for config in configs:
        run_training(TrainConfig.from_dict(config), lambda metrics, state: None)
    return time.perf_counter() - start


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=None, help="N (default 8; smoke 2)")
    p.add_argument("--epochs", type=int, default=None, help="E (default 3; smoke 1)")
    args = p.parse_args()
    trials = args.trials or (2 if args.smoke else 8)
    few = max(1, trials // 4)
    epochs = args.epochs or (1 if args.smoke else 3)
    repeats = args.repeats or (1 if args.smoke else 3)
    header(
        f"orchestration overhead: {few} and {trials} trials x {epochs} epochs, {repeats} repeats"
    )
    with tempfile.TemporaryDirectory(prefix="cephtune-bench-") as tmp:
        project = args.workdir or Path(tmp)
        project.mkdir(parents=True, exist_ok=True)
        os.environ["CEPHTUNE_CACHE_DIR"] = str(project / "cache")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        # Untimed: the synthetic data, the preprocessing cache and this process's imports.
        configs = run_study(project, "warm-up", 1, 1)["configs"]
        run_loop(configs)
        a_few: list[dict] = []
        a_all: list[dict] = []
        b: list[float] = []
        for i in range(repeats):
            a_few.append(run_study(project, "few", few, epochs))
            a_all.append(run_study(project, "all", trials, epochs))
            b.append(run_loop(a_all[-1]["configs"]))
            print(
                f"repeat {i + 1}: search.py start {few} trials {a_few[-1]['total']:.1f} s, "
                f"{trials} trials {a_all[-1]['total']:.1f} s "
                f"(launch to first trial {a_all[-1]['startup']:.1f}, last trial to exit "
                f"{a_all[-1]['teardown']:.1f}); plain loop {b[-1]:.1f} s",
                flush=True,
            )
    # a(N) = S + N (t + o) and b(N) = N t: two trial counts separate the one-off start-up S
    # (imports, Ray, records, the first trial process's imports, tear-down) from the per-trial o.
    slope = [
        (big["total"] - small["total"]) / (trials - few)
        for small, big in zip(a_few, a_all, strict=True)
    ]
    per_trial = [s - loop / trials for s, loop in zip(slope, b, strict=True)]
    startup = [small["total"] - few * s for small, s in zip(a_few, slope, strict=True)]
    first = [run["startup"] for run in a_all]
    last = [run["teardown"] for run in a_all]
    total = [run["total"] for run in a_all]
    print(
        textwrap.dedent(
            f"""\
            seconds, median [min-max] over {repeats} repeats
              (a) search.py start, {trials} trials   {spread(total)}
                  launch to first trial    {spread(first)}
                  last trial to exit       {spread(last)}
              (b) plain training loop      {spread(b)}
              per trial: (a) slope         {spread(slope)}
                         (b)               {spread([x / trials for x in b])}
              per-trial overhead           {spread(per_trial)}   target <= 0.5
              start-up (one-off)           {spread(startup)}   target <= 8"""
        )
    )
    finish(
        overhead_s_per_trial=median(per_trial),
        startup_s=median(startup),
        a_over_b=median(total) / median(b),
    )


if __name__ == "__main__":
    main()
