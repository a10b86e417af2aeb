"""Search efficiency on a learning-curve table: cephtune against random search and two peers,
over many seeds, with a paired test.

The table (``benchmarks/tables/curves-bench.json``, rebuilt by ``curves_build.py``) holds the
valid and test MRE after every epoch of 192 configurations of the benchmark space (lr 1e-4 to
1e-2 in 8 log steps, both losses, sigma 1 / 1.75 / 2.5, batch 4 / 8, warmup 0 / 2) trained 27
epochs on 200 synthetic cephalograms (140 train, 30 valid, 30 test) at 64 px with
hrnet_w18_small. Four arms search the space as a study file writes it, one trial at a time
(``tabular_arms``): A cephtune's searcher and scheduler with the product's defaults, in Ray Tune;
B random search without early stopping (``--trials`` configurations x 27 epochs: the budget);
C Ray's stock OptunaSearch + ASHA; D Optuna's stock loop + successive halving. Each arm's
history is cut at the budget; its selection is its finished trial with the best valid MRE, its
score that trial's test MRE (``histories``).

Per seed: A's epochs until it had a finished trial as good on valid as B's selection, as a
fraction of the budget (target <= 1/3); A's test score / B's, / C's, / D's. Over the seeds: the
medians, the fraction of seeds that meet each target, and paired Wilcoxon signed-rank tests of
the test scores (A lower than B; A higher than C or D, which must not hold). The default seeds
(0-99) were used for nothing else; the defaults were chosen on seeds 1000-1049. ``--seeds``
takes others (``--seeds 11,12,13``, ``--seeds 500-699``).

Before the search, the table's own signal: the Spearman rank correlation, over all its
configurations, between the valid MRE at each epoch and at the last one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from common import finish, header, parser
from curves import Table, table_path
from histories import fmt, median, parse_seeds, wilcoxon

TARGET_FRAC = 1 / 3
TARGET_SEEDS = 0.7
HELD_OUT_SEEDS = "0-99"
DEVELOPMENT_SEEDS = "1000-1049"  # the seeds the defaults were chosen on

# The product's defaults: no sampler or early-stopping line (``--study-extra`` adds some, to
# try other settings on development seeds).
STUDY = """\
name: tab-s{seed}
dataset: {{format: synthetic, n: {n}, size: [{width}, {height}], seed: 0}}
space: space.yaml
num_samples: {num_samples}
max_epochs: {max_epochs}
resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: 1
seed: {seed}
{extra}"""


def signal(table: Table, best_fraction: float = 1.0) -> list[tuple[int, float]]:
    """(epoch, Spearman rho of the valid MRE at that epoch with the valid MRE at the last),
    over the configurations that ran every epoch (with ``best_fraction`` < 1, over that
    fraction of them with the lowest last valid MRE: the trials a late rung must tell apart)."""
    from scipy.stats import spearmanr

    rows = [r for r in table.rows.values() if len(r["valid"]) == table.task.max_epochs]
    rows = sorted(rows, key=lambda r: r["valid"][-1])[: max(3, round(len(rows) * best_fraction))]
    last = [r["valid"][-1] for r in rows]
    return [
        (e, float(spearmanr([r["valid"][e - 1] for r in rows], last).statistic))
        for e in range(1, table.task.max_epochs)
    ]


def write_files(work: Path, table: Table, seed: int, num_samples: int, extra: str) -> Path:
    task = table.task
    (work / "space.yaml").write_text(task.space_yaml())
    study = work / f"tab-s{seed}.yaml"
    study.write_text(
        STUDY.format(
            seed=seed,
            n=task.n,
            width=task.width,
            height=task.height,
            num_samples=num_samples,
            max_epochs=task.max_epochs,
            extra=extra.replace("\\n", "\n") + ("\n" if extra else ""),
        )
    )
    return study


def run_seed(work: Path, table: Table, seed: int, trials: int, extra: str) -> dict:
    """One seed's four arms, scored: what ``report`` needs of them (plain data)."""
    from tabular_arms import cephtune, optuna_native, random_search, ray_optunasearch

    from search.studyfiles.study import load_study

    budget = trials * table.task.max_epochs
    spec = load_study(write_files(work, table, seed, budget, extra))
    with contextlib.redirect_stdout(io.StringIO()):  # Ray's end-of-run lines
        arms = {
            "B": random_search(spec, trials, table),
            "A": cephtune(spec, budget, work),
            "C": ray_optunasearch(spec, budget, work),
            "D": optuna_native(spec, budget, table),
        }
    picks = {k: arms[k].selected(budget) for k in "ABCD"}
    return {
        "seed": seed,
        "test": {k: (p.test if p is not None else math.inf) for k, p in picks.items()},
        "valid": {k: arms[k].best_valid(budget) for k in "ABCD"},
        "to_match": arms["A"].epochs_to_reach(arms["B"].best_valid(budget), budget),
        "trials": {k: arms[k].trials_in(budget) for k in "ABCD"},
        "rungs": arms["A"].rungs,
    }


def quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    logging.getLogger("ray").setLevel(logging.ERROR)


def report(rows: list[dict], budget: int) -> None:
    fracs, ratios, vs_c, vs_d = [], [], [], []
    scores = {k: [r["test"][k] for r in rows] for k in "ABCD"}
    widened = sum(bool(r["rungs"].get("widened")) for r in rows)
    print(f"{'seed':>5} {'B test':>7} {'A test':>7} {'C test':>7} {'D test':>7} {'frac':>6} "
          f"{'A/B':>6} {'A/C':>6} {'A/D':>6} {'trials A/C/D':>13} widened")  # fmt: skip
    for r in rows:
        test = r["test"]
        fracs.append(r["to_match"] / budget)
        ratios.append(test["A"] / test["B"])
        vs_c.append(test["A"] / test["C"])
        vs_d.append(test["A"] / test["D"])
        counts = "/".join(str(r["trials"][k]) for k in "ACD")
        print(f"{r['seed']:>5} {test['B']:>7.3f} {test['A']:>7.3f} {test['C']:>7.3f} "
              f"{test['D']:>7.3f} {fmt(fracs[-1]):>6} {ratios[-1]:>6.3f} {vs_c[-1]:>6.3f} "
              f"{vs_d[-1]:>6.3f} {counts:>13} {r['rungs'].get('widened') or '-'}")  # fmt: skip
    n = len(rows)
    met_frac = sum(f <= TARGET_FRAC + 1e-9 for f in fracs) / n
    p_b, pairs_b = wilcoxon(scores["A"], scores["B"], "less")
    p_c, pairs_c = wilcoxon(scores["A"], scores["C"], "greater")
    p_d, pairs_d = wilcoxon(scores["A"], scores["D"], "greater")
    print(
        "frac: epochs A spent until it had a finished trial as good on valid as B's selection, / "
        "budget. test: the selection's test MRE (mm). A/B, A/C, A/D: A's test MRE / the other's."
        " widened: the rungs (epochs after warmup) cephtune's probes widened."
    )
    medians = ", ".join(f"{k} {median(scores[k]):.3f}" for k in "ABCD")
    print(f"over {n} seeds: medians of the test MRE: {medians}; a rung widened on {widened}")
    print(
        f"  epochs_to_match_frac median {fmt(median(fracs))}; <= 1/3 on {met_frac:.0%} of seeds "
        f"(target >= {TARGET_SEEDS:.0%})"
    )
    for label, ratios_, p, pairs, side in (
        ("A/B", ratios, p_b, pairs_b, "A lower"),
        ("A/C", vs_c, p_c, pairs_c, "A higher"),
        ("A/D", vs_d, p_d, pairs_d, "A higher"),
    ):
        better = sum(r < 1 for r in ratios_)
        worse = sum(r > 1 for r in ratios_)
        print(
            f"  {label}: median {median(ratios_):.3f}; A better on {better}, equal on "
            f"{n - better - worse}, worse on {worse}; Wilcoxon ({side}) p = {p:.3g} over "
            f"{pairs} differing seeds"
        )
    finish(
        epochs_to_match_frac=median(fracs),
        best_mre_ratio=median(ratios),
        vs_ray_optunasearch=median(vs_c),
        vs_optuna_native=median(vs_d),
        seeds=n,
        wilcoxon_p=p_b,
        seeds_met_frac=met_frac,
        wilcoxon_p_vs_ray=p_c,
        wilcoxon_p_vs_optuna=p_d,
    )


def run_seeds(args, table: Table, seeds: tuple[int, ...], trials: int, out: Path) -> None:
    """Seeds in this process, each seed's result a line of JSON in ``out`` as it ends."""
    import ray

    quiet()
    here = Path(__file__).resolve().parent
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(here), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    os.environ["CEPHTUNE_CURVES_TABLE"] = str(args.table.resolve())
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # no TensorBoard logger (torch)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="search-tabular-", dir=args.workdir) as folder:
            for seed in seeds:
                row = run_seed(Path(folder), table, seed, trials, args.study_extra)
                with open(out, "a") as sink:
                    sink.write(json.dumps(row) + "\n")
    finally:
        ray.shutdown()


def run_parallel(args, seeds: tuple[int, ...], jobs: int, out: Path) -> None:
    """``jobs`` processes of this script, each with its own Ray and a share of the seeds: a
    lookup trial waits on Ray far more than it computes, so they overlap even on 2 cores."""
    shares = [seeds[i::jobs] for i in range(jobs)]
    procs = []
    for share in filter(None, shares):
        command = [sys.executable, __file__, "--seeds", ",".join(map(str, share)), "--jobs", "1",
                   "--trials", str(args.trials), "--table", str(args.table), "--out-json",
                   str(out), "--study-extra", args.study_extra]  # fmt: skip
        if args.smoke:
            command.append("--smoke")
        if args.workdir:
            command += ["--workdir", str(args.workdir)]
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    failed = [p.args for p in procs if p.wait() != 0]
    if failed:
        sys.exit(f"a share of the seeds failed: {failed[0]}")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", default=None, help=f"default {HELD_OUT_SEEDS} (smoke: 0,1)")
    p.add_argument("--trials", type=int, default=20, help="random search's trials (the budget)")
    p.add_argument("--table", type=Path, help="default tables/curves-bench.json (smoke: -small)")
    p.add_argument("--jobs", type=int, default=3, help="processes that share the seeds")
    p.add_argument(
        "--study-extra", default="", help="YAML lines added to every study (development only)"
    )
    p.add_argument("--out-json", type=Path, help=argparse.SUPPRESS)  # a share's results
    p.add_argument(
        "--signal-only",
        action="store_true",
        help="print the table's Spearman rho per epoch (all, and the best quarter) and stop",
    )
    args = p.parse_args()
    seeds = parse_seeds(args.seeds or ("0,1" if args.smoke else HELD_OUT_SEEDS))
    trials = 3 if args.smoke else args.trials
    args.table = args.table or table_path("small" if args.smoke else "bench")
    table = Table.load(args.table)
    if args.signal_only:
        every, best = signal(table), signal(table, 0.25)
        done = sum(len(r["valid"]) == table.task.max_epochs for r in table.rows.values())
        print(f"table {args.table.name}: {done} configurations that ran every epoch")
        for (e, rho), (_, top) in zip(every, best, strict=True):
            print(f"  epoch {e}: rho {rho:.2f} over all, {top:.2f} over the best quarter")
        print("RATIO " + " ".join(f"rho_e{e}={rho:.4f}" for e, rho in every))
        return
    if args.out_json is not None:  # one share of a parallel run
        run_seeds(args, table, seeds, trials, args.out_json)
        return
    header("search efficiency on a learning-curve table: cephtune vs random, Ray, Optuna")
    task = table.task
    print(
        f"table: {args.table.name}, {len(table.rows)} configurations x {task.max_epochs} epochs "
        f"(synthetic n={task.n}, {task.image_size} px, {task.backbone}); budget {trials} x "
        f"{task.max_epochs} = {trials * task.max_epochs} epochs; seeds {args.seeds or 'default'}"
        f" ({len(seeds)})" + (f"; study extra: {args.study_extra!r}" if args.study_extra else "")
    )
    rhos = signal(table)
    print("signal: Spearman rho(valid MRE at epoch e, at the last epoch): " + ", ".join(
        f"{e}: {rho:.2f}" for e, rho in rhos if e in (1, 2, 3, 5, 9, 18)))  # fmt: skip
    sys.stdout.flush()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="search-tabular-") as folder:
        out = Path(folder) / "seeds.jsonl"
        jobs = max(1, min(args.jobs, len(seeds)))
        if jobs == 1:
            run_seeds(args, table, seeds, trials, out)
        else:
            run_parallel(args, seeds, jobs, out)
        found = {r["seed"]: r for r in map(json.loads, out.read_text().splitlines())}
    print(f"{len(seeds)} seeds in {time.perf_counter() - started:.0f} s")
    report([found[s] for s in seeds], trials * task.max_epochs)


if __name__ == "__main__":
    main()
