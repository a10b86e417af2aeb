"""Search efficiency: cephtune's study (TPE + ASHA) against random search and two peers.

Four arms search the same space (``search_product_arms.SPACE``) on the same small synthetic
task with the same seed (sampler and training), one trial at a time on both cores, through real
libraries:

- A (cephtune): the product path. A study YAML in a scratch project with the product defaults
  (sampler options left out, so TPE with 5 random start-up trials, multivariate, group, constant
  liar; ASHA grace 1, factor 3, rungs counted in epochs after each trial's warmup),
  ``search.cli.main(["start", file, "--fresh"])`` in this process, the history read back from
  the Optuna RDB records (every trial's intermediate values, epoch -> valid MRE).
- B (baseline): the same path with ``sampler: random``, ``asha: false``: ``random_trials``
  trials, each to ``max_epochs``. Its epochs are the budget: random_trials x max_epochs.
- C (Ray's stock OptunaSearch): ``ray.tune.search.optuna.OptunaSearch`` with an in-memory Optuna
  study, the same sampler (``make_sampler``), the same ASHA (``tuner.scheduler`` of A's study
  spec), the same trainable and config (``tuner.resourced``, ``tuner.Suggest`` with the study's
  constant settings). What differs from A is the bookkeeping: an ASHA-stopped trial is told
  COMPLETE with its early MRE, so TPE models it as a finished result (A tells it PRUNED).
- D (Optuna alone): ``study.optimize`` with ``SuccessiveHalvingPruner(min_resource=grace,
  reduction_factor=3)``, the same sampler, no Ray: the objective builds the TrainConfig from the
  same settings and ``trial`` suggestions and calls ``run_training`` in this process (2 torch
  threads). It reports to the pruner at step = epochs after warmup, once that is >= 1 (the rule
  of A's rungs), while the history keeps every epoch.

Fairness rules. Every history is time-ordered (trial in creation order, then epoch) and cut at
B's budget: what a sampler or pruner decided before the cut depends only on results before it,
and a trial that straddles the budget keeps only the epochs inside it. Ray cannot stop A on an
epoch budget, so A gets more trials than it measured needing (``A_EPOCHS_PER_TRIAL``); C and D
stop themselves once the budget is spent. The same seed makes the random start-up trials of A, C
and D draw B's first configurations; training is seeded too, but CPU kernels and pruning
decisions taken on ties can still make paired trials differ in the last digits. An "epoch" is one
reported epoch (train + valid); an arm's best MRE is the minimum over its reported epochs inside
the budget (the checkpoint a user would keep). Wall times are printed but not compared: C and D
skip A's MLflow runs and storage writes, and D skips Ray's per-trial overhead.

Figures per seed, medians over seeds on the RATIO line (headline first):

- ``epochs_to_match_frac``: epochs A needed (in time order) until its best so far was <= B's
  best, / budget. Target <= 1/3 on >= 4 of 5 seeds. ``inf`` when never within the budget.
- ``best_mre_ratio``: A's best / B's best. Target <= 0.95 (median).
- ``vs_ray_optunasearch``, ``vs_optuna_native``: A's best / C's best, A's best / D's best.
  Below 1: cephtune found the better model within the same budget. Target <= 1.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from common import finish, header, parser
from search_arms import History, optuna_native, ray_optunasearch
from search_product_arms import SPACE, Mode, read_arm, write_study

TARGET_FRAC = 1 / 3
TARGET_RATIO = 0.95

MODES = {
    "smoke": Mode(
        (0,), random_trials=2, max_epochs=2, grace=1, factor=3, n=12, image_size=32, warmup_high=1
    ),
    "quick": Mode((0,), random_trials=6, max_epochs=9, grace=1, factor=3, n=60, image_size=64),
    "full": Mode(
        (0, 1, 2, 3, 4), random_trials=10, max_epochs=9, grace=1, factor=3, n=60, image_size=64
    ),
}


def run_arm(project: Path, log, tag: str, mode: Mode, arm: str, seed: int) -> History:
    """Arm ``arm`` of ``seed`` (its output to ``log``); A and B through ``search.cli``."""
    from search.cli import main
    from search.spec.study import load_study

    study_file = write_study(project, tag, mode, "B" if arm == "B" else "A", seed)
    print(f"\n===== {arm} seed {seed} =====", file=log, flush=True)
    start = time.perf_counter()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        if arm in "AB":
            rc = main(["start", str(study_file), "--fresh"])
            if rc != 0:
                sys.exit(f"{study_file.stem}: search.py start exited {rc}; see {log.name}")
            found = read_arm(project, study_file.stem, arm, time.perf_counter() - start)
        elif arm == "C":
            found = ray_optunasearch(load_study(study_file), seed, mode.budget, project)
        else:
            found = optuna_native(load_study(study_file), seed, mode.budget)
    log.flush()
    states = " ".join(f"{k.lower()} {v}" for k, v in sorted(found.states.items()))
    print(
        f"  {arm} seed {seed}: {found.trials} trials ({states}), {len(found.history)} epochs, "
        f"best {found.best(mode.budget):.3f} mm, {found.wall_s:.0f} s",
        flush=True,
    )
    return found


def fmt(value: float, spec: str = ".3f") -> str:
    return "inf" if math.isinf(value) else format(value, spec)


def quiet() -> None:
    """Library noise off this benchmark's output: Optuna's INFO lines and experimental warnings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    logging.getLogger("ray").setLevel(logging.WARNING)


def run_all(project: Path, tag: str, mode: Mode) -> list[dict[str, History]]:
    """Every (seed, arm) in ``project``; the order of the arms rotates with the seed."""
    import ray

    quiet()
    os.environ["CEPHTUNE_CACHE_DIR"] = str(project / "cache")
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # MLflow state in ./mlruns of the scratch project
    (project / f"space-{tag}.yaml").write_text(
        SPACE.format(
            image_size=mode.image_size, max_epochs=mode.max_epochs, warmup_high=mode.warmup_high
        )
    )
    here = Path.cwd()
    os.chdir(project)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        with open(project / f"studies-{tag}.log", "a") as log:
            rows = []
            for i, seed in enumerate(mode.seeds):
                order = "BACD"[i % 4 :] + "BACD"[: i % 4]
                rows.append({arm: run_arm(project, log, tag, mode, arm, seed) for arm in order})
            return rows
    finally:
        ray.shutdown()
        os.chdir(here)


def versus(ratios: list[float]) -> str:
    better = sum(r < 1 for r in ratios)
    equal = sum(r == 1 for r in ratios)
    return f"A better/equal/worse on {better}/{equal}/{len(ratios) - better - equal}"


def report(rows: list[dict[str, History]], mode: Mode, total: float) -> None:
    budget = mode.budget
    print()
    print(
        f"{'seed':>4} {'budget':>6} {'B best':>7} {'A best':>7} {'C best':>7} {'D best':>7} "
        f"{'A ep':>5} {'frac':>6} {'A/B':>6} {'A/C':>6} {'A/D':>6} {'trials A/C/D':>12} "
        f"{'wall s A/B/C/D':>16}"
    )
    fracs, ratios, vs_c, vs_d, notes = [], [], [], [], []
    for seed, arms in zip(mode.seeds, rows, strict=True):
        a, b, c, d = (arms[k] for k in "ABCD")
        b_best = b.best()
        best = {k: arms[k].best(budget) for k in "ACD"}
        to_match = a.epochs_to_reach(b_best, budget)
        fracs.append(to_match / budget)
        ratios.append(best["A"] / b_best)
        vs_c.append(best["A"] / best["C"])
        vs_d.append(best["A"] / best["D"])
        trials = "/".join(str(arms[k].trials_in(budget)) for k in "ACD")
        walls = "/".join(f"{arms[k].wall_s:.0f}" for k in "ABCD")
        print(
            f"{seed:>4} {budget:>6} {b_best:>7.3f} {best['A']:>7.3f} {best['C']:>7.3f} "
            f"{best['D']:>7.3f} {fmt(to_match, '.0f'):>5} {fmt(fracs[-1]):>6} {ratios[-1]:>6.3f} "
            f"{vs_c[-1]:>6.3f} {vs_d[-1]:>6.3f} {trials:>12} {walls:>16}"
        )
        if len(b.history) != budget:
            notes.append(f"seed {seed}: B trained {len(b.history)} epochs, not {budget}")
        for arm in arms.values():
            if len(arm.history) < budget:
                notes.append(f"seed {seed}: {arm.name} trained only {len(arm.history)} epochs")
            for state in ("FAIL", "ERROR"):
                if arm.states.get(state):
                    notes.append(f"seed {seed}: {arm.name}: {arm.states[state]} trial(s) {state}")
            notes += [f"seed {seed}: {arm.name}: {note}" for note in arm.notes]
    print(
        "A ep: epochs A needed (time order) to reach B's best; frac = A ep / budget (target <= "
        "0.333). Bests within the budget. A/B, A/C, A/D: A's best / the other's (< 1: A better). "
        "trials: started inside the budget. Wall times include each arm's own overhead."
    )
    for note in notes:
        print(f"note: {note}")
    n = len(rows)
    frac, ratio = statistics.median(fracs), statistics.median(ratios)
    print(
        f"median over {n} seed(s): epochs_to_match_frac {fmt(frac)} (target <= 0.333 on >= 4 of "
        f"5; met on {sum(f <= TARGET_FRAC + 1e-9 for f in fracs)}/{n}), best_mre_ratio "
        f"{ratio:.3f} (target <= {TARGET_RATIO}; met on {sum(r <= TARGET_RATIO for r in ratios)}"
        f"/{n})"
    )
    print(
        f"A/C (Ray OptunaSearch) median {statistics.median(vs_c):.3f}, {versus(vs_c)}; A/D "
        f"(Optuna alone) median {statistics.median(vs_d):.3f}, {versus(vs_d)}; total {total:.0f} s"
    )
    finish(
        epochs_to_match_frac=frac,
        best_mre_ratio=ratio,
        vs_ray_optunasearch=statistics.median(vs_c),
        vs_optuna_native=statistics.median(vs_d),
        seeds=n,
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 seed, a small budget (~5 minutes)")
    args = p.parse_args()
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    mode = MODES[mode_name]
    header(f"search efficiency: cephtune vs random, Ray OptunaSearch, Optuna ({mode_name})")
    print(
        f"task: synthetic n={mode.n} (193x240 px), hrnet_w18_small at {mode.image_size} px, "
        f"max_epochs {mode.max_epochs}; one trial at a time on 2 threads; seeds {list(mode.seeds)}"
    )
    print(
        f"B: random, no early stopping, {mode.random_trials} trials = budget {mode.budget} "
        f"epochs. A: cephtune (TPE + ASHA grace {mode.grace}, factor {mode.factor}); C: Ray "
        "OptunaSearch + the same ASHA; D: Optuna + SuccessiveHalvingPruner; all cut at the budget"
    )
    sys.stdout.flush()
    started = time.perf_counter()
    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="search-efficiency-") as folder:
            rows = run_all(Path(folder), mode_name, mode)
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        rows = run_all(args.workdir.resolve(), mode_name, mode)
    report(rows, mode, time.perf_counter() - started)


if __name__ == "__main__":
    main()
