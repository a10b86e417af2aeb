"""Search efficiency end to end: cephtune's study against random search and two peers, training
for real; the confirmation of what ``search_tabular.py`` measures on a table.

Four arms search the benchmark space (``curves.SPACE_YAML``) on the tabular benchmark's task
(``curves.TASKS["bench"]``: 200 synthetic cephalograms, 140 train / 30 valid / 30 test, 64 px,
hrnet_w18_small, 27 epochs a trial), with the same seed (sampler and training), one trial at a
time on one thread, through real libraries; ``--jobs`` seeds run at once, each in its own
process and scratch project (on 2 cores two one-thread trials train almost twice as fast as
one two-thread trial at 64 px):

- A (cephtune): the product path with the product's defaults (no sampler or early-stopping
  line in the study file): ``search.cli.main(["start", file, "--fresh"])`` in this process, the
  history read back from the Optuna RDB records.
- B (baseline): the same path with ``sampler: random`` and ``asha: false``: ``--trials``
  configurations, each to the end of its schedule. Its epochs are the budget.
- C (Ray's stock path): ``OptunaSearch`` with the same sampler and Ray's ``ASHAScheduler``
  with the study's grace period and reduction factor on training iterations.
- D (Optuna's stock path): ``study.optimize`` with the same sampler and a
  ``SuccessiveHalvingPruner`` of the same grace period and reduction factor, every epoch
  reported, ``run_training`` in this process.

Every history is time-ordered and cut at B's budget (``histories``). Each arm's selection is
what ``promote`` takes (its finished trial with the best valid MRE); its score is the test MRE
of that configuration re-trained with its full schedule and seed (``run_training``, as
``promote`` does), on the test split that no arm saw. Figures per seed, medians over seeds on
the RATIO line: ``best_mre_ratio`` (A's test MRE / B's; target <= 0.95 on >= 4 of 5 seeds),
``epochs_to_match_frac`` (A's epochs until a finished trial as good on valid as B's selection,
/ budget), ``vs_ray_optunasearch`` and ``vs_optuna_native`` (A's test MRE / C's, / D's).

The default seeds of the full mode (20-24) shaped nothing; the defaults were chosen on the
tabular benchmark's development seeds. ``--seeds 11,12,13`` runs others.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from common import finish, header, parser
from curves import TASKS, Task
from histories import History, fmt, median, parse_seeds, wilcoxon
from search_arms import optuna_native, ray_optunasearch, settings
from search_product_arms import read_arm, write_study

TARGET_RATIO = 0.95
TARGET_FRAC = 1 / 3


@dataclass(frozen=True)
class Mode:
    seeds: str
    task: Task
    trials: int  # arm B's; the budget is trials x max_epochs


SMOKE_TASK = Task("smoke", n=12, width=193, height=240, image_size=32, max_epochs=3)
MODES = {
    "smoke": Mode("0", SMOKE_TASK, trials=2),
    "quick": Mode("0", TASKS["small"], trials=6),
    "full": Mode("20-24", TASKS["bench"], trials=10),
}


def run_arm(project: Path, log, tag: str, mode: Mode, arm: str, seed: int) -> History:
    """Arm ``arm`` of ``seed`` (its output to ``log``); A and B through ``search.cli``."""
    from search.cli import main
    from search.studyfiles.study import load_study

    task, budget = mode.task, mode.trials * mode.task.max_epochs
    study_file = write_study(project, tag, task, mode.trials, "B" if arm == "B" else "A", seed)
    print(f"\n===== {arm} seed {seed} =====", file=log, flush=True)
    start = time.perf_counter()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        if arm in "AB":
            rc = main(["start", str(study_file), "--fresh"])
            if rc != 0:
                sys.exit(f"{study_file.stem}: search.py start exited {rc}; see {log.name}")
            found = read_arm(project, study_file.stem, arm, task.max_epochs,
                             time.perf_counter() - start)  # fmt: skip
        elif arm == "C":
            found = ray_optunasearch(load_study(study_file), budget, project)
        else:
            found = optuna_native(load_study(study_file), budget)
    log.flush()
    states = " ".join(f"{k.lower()} {v}" for k, v in sorted(found.states.items()))
    print(
        f"  {arm} seed {seed}: {found.trials} trials ({states}), {len(found.history)} epochs, "
        f"best valid {found.best_valid(budget):.3f} mm, {found.wall_s:.0f} s",
        flush=True,
    )
    return found


class TestScores:
    """The test MRE of a selection: its configuration re-trained with the full schedule and the
    study's seed, as ``promote`` does (once per configuration and seed)."""

    def __init__(self, project: Path, tag: str, mode: Mode) -> None:
        self.project, self.tag, self.mode = project, tag, mode
        self.done: dict[str, float] = {}

    def __call__(self, seed: int, params: dict) -> float:
        import numpy as np

        from search.studyfiles.study import load_study
        from trainables.config import TrainConfig
        from trainables.eval.inference import errors_mm
        from trainables.run import dataset_for
        from trainables.train import run_training

        key = json.dumps([seed, params], sort_keys=True)
        if key not in self.done:
            spec = load_study(self.project / f"se-{self.tag}-A-s{seed}.yaml")
            values = {**settings(spec), **spec.space.fixed, **params}
            cfg = TrainConfig.from_dict(values, "selection")
            run = run_training(cfg, lambda m, s: None, device="cpu")
            test = dataset_for(cfg, "test", augment=False)
            errors = errors_mm(run.model, test, run.precision, cfg.batch_size)
            self.done[key] = float(np.nanmean(errors))
        return self.done[key]


def quiet() -> None:
    """Library noise off this benchmark's output: Optuna's INFO lines and experimental warnings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    logging.getLogger("ray").setLevel(logging.WARNING)


def score_seed(seed: int, arms: dict[str, History], test: dict[str, float], budget: int) -> dict:
    """What ``report`` needs of one seed (plain data, so a share run elsewhere can send it)."""
    notes = []
    for arm in arms.values():
        if len(arm.history) < budget:
            notes.append(f"seed {seed}: {arm.name} trained only {len(arm.history)} epochs")
        for state in ("FAIL", "ERROR"):
            if arm.states.get(state):
                notes.append(f"seed {seed}: {arm.name}: {arm.states[state]} trial(s) {state}")
        notes += [f"seed {seed}: {arm.name}: {note}" for note in arm.notes]
    return {
        "seed": seed,
        "test": test,
        "to_match": arms["A"].epochs_to_reach(arms["B"].best_valid(budget), budget),
        "trials": {k: arms[k].trials_in(budget) for k in "ABCD"},
        "walls": {k: arms[k].wall_s for k in "ABCD"},
        "rungs": arms["A"].rungs,
        "notes": notes,
    }


def run_all(project: Path, tag: str, mode: Mode, seeds: tuple[int, ...], out: Path) -> None:
    """Every (seed, arm) in ``project``, the order of the arms rotating with the seed, then
    each arm's selection scored on test; each seed's row a line of JSON in ``out``."""
    import ray

    quiet()
    os.environ["CEPHTUNE_CACHE_DIR"] = str(project / "cache")
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # MLflow state in ./mlruns of the scratch project
    (project / f"space-{tag}.yaml").write_text(mode.task.space_yaml())
    here = Path.cwd()
    os.chdir(project)
    ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    budget = mode.trials * mode.task.max_epochs
    scores = TestScores(project, tag, mode)
    try:
        with open(project / f"studies-{tag}.log", "a") as log:
            for seed in seeds:
                i = seed % 4
                order = "BACD"[i:] + "BACD"[:i]
                arms = {arm: run_arm(project, log, tag, mode, arm, seed) for arm in order}
                test = {}
                for arm, found in arms.items():
                    pick = found.selected(budget)
                    chosen = None if pick is None else found.params[pick.trial]
                    test[arm] = float("inf") if chosen is None else scores(seed, chosen)
                print(f"  seed {seed}: test MRE of each selection " + ", ".join(
                    f"{k} {fmt(test[k])}" for k in "ABCD"), flush=True)  # fmt: skip
                with open(out, "a") as sink:
                    sink.write(json.dumps(score_seed(seed, arms, test, budget)) + "\n")
    finally:
        ray.shutdown()
        os.chdir(here)


def report(rows: list[dict], mode: Mode, total: float) -> None:
    budget = mode.trials * mode.task.max_epochs
    print()
    print(f"{'seed':>5} {'B test':>7} {'A test':>7} {'C test':>7} {'D test':>7} {'A ep':>5} "
          f"{'frac':>6} {'A/B':>6} {'A/C':>6} {'A/D':>6} {'trials A/C/D':>12} "
          f"{'wall s A/B/C/D':>16}")  # fmt: skip
    fracs, ratios, vs_c, vs_d, notes = [], [], [], [], []
    for row in rows:
        test = row["test"]
        fracs.append(row["to_match"] / budget)
        ratios.append(test["A"] / test["B"])
        vs_c.append(test["A"] / test["C"])
        vs_d.append(test["A"] / test["D"])
        trials = "/".join(str(row["trials"][k]) for k in "ACD")
        walls = "/".join(f"{row['walls'][k]:.0f}" for k in "ABCD")
        print(f"{row['seed']:>5} {test['B']:>7.3f} {test['A']:>7.3f} {test['C']:>7.3f} "
              f"{test['D']:>7.3f} {fmt(row['to_match'], '.0f'):>5} {fmt(fracs[-1]):>6} "
              f"{ratios[-1]:>6.3f} {vs_c[-1]:>6.3f} {vs_d[-1]:>6.3f} {trials:>12} "
              f"{walls:>16}")  # fmt: skip
        notes += row["notes"]
    print(
        "test: the test MRE (mm) of each arm's selection re-trained; A ep: epochs A spent until "
        "a finished trial as good on valid as B's selection; frac = A ep / budget. trials: "
        "started inside the budget."
    )
    for note in notes:
        print(f"note: {note}")
    n = len(rows)
    met = sum(r <= TARGET_RATIO for r in ratios)
    p, pairs = wilcoxon([r["test"]["A"] for r in rows], [r["test"]["B"] for r in rows], "less")
    print(
        f"over {n} seed(s): best_mre_ratio median {median(ratios):.3f} (<= {TARGET_RATIO} on "
        f"{met}/{n}; target >= 4 of 5), epochs_to_match_frac median {fmt(median(fracs))} "
        f"(<= 1/3 on {sum(f <= TARGET_FRAC + 1e-9 for f in fracs)}/{n}); A/C median "
        f"{median(vs_c):.3f}, A/D median {median(vs_d):.3f}; Wilcoxon A < B p = {p:.3g} over "
        f"{pairs} differing seeds; total {total:.0f} s"
    )
    finish(
        best_mre_ratio=median(ratios),
        epochs_to_match_frac=median(fracs),
        vs_ray_optunasearch=median(vs_c),
        vs_optuna_native=median(vs_d),
        seeds=n,
        wilcoxon_p=p,
        seeds_met_frac=met / n,
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 seed of the small task (~10 minutes)")
    p.add_argument("--seeds", help="seeds, e.g. 11,12,13 or 30-34 (default: the mode's)")
    p.add_argument("--jobs", type=int, default=2, help="processes that share the seeds")
    p.add_argument("--out-json", type=Path, help=argparse.SUPPRESS)  # a share's results
    args = p.parse_args()
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    mode = MODES[mode_name]
    seeds = parse_seeds(args.seeds or mode.seeds)
    if args.out_json is not None:  # one share of a parallel run, in its own project
        args.workdir.mkdir(parents=True, exist_ok=True)
        run_all(args.workdir.resolve(), mode_name, mode, seeds, args.out_json)
        return
    task = mode.task
    header(f"search efficiency end to end: cephtune vs random, Ray, Optuna ({mode_name})")
    print(
        f"task: synthetic n={task.n} ({task.width}x{task.height} px), {task.backbone} at "
        f"{task.image_size} px, {task.max_epochs} epochs; one trial at a time per seed on one "
        f"thread, {min(args.jobs, len(seeds))} seeds at once; seeds {list(seeds)}; B: "
        f"{mode.trials} random trials = budget {mode.trials * task.max_epochs} epochs; A, C, D "
        "cut there"
    )
    sys.stdout.flush()
    started = time.perf_counter()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="search-efficiency-", dir=args.workdir) as folder:
        out = Path(folder) / "seeds.jsonl"
        jobs = max(1, min(args.jobs, len(seeds)))
        procs = []
        for j in range(jobs):
            share = ",".join(map(str, seeds[j::jobs]))
            command = [sys.executable, __file__, "--seeds", share, "--out-json", str(out),
                       "--workdir", str(Path(folder) / f"job{j}")]  # fmt: skip
            command += ["--smoke"] if args.smoke else ["--quick"] if args.quick else []
            procs.append(subprocess.Popen(command))
        failed = [p.args for p in procs if p.wait() != 0]
        if failed:
            sys.exit(f"a share of the seeds failed: {failed[0]}")
        found = {r["seed"]: r for r in map(json.loads, out.read_text().splitlines())}
    report([found[s] for s in seeds], mode, time.perf_counter() - started)


if __name__ == "__main__":
    main()
