"""Search efficiency: ASHA + TPE against random search without early stopping, equal epoch budget.

Both arms search the same space (``SPACE`` below) on the same small synthetic task, through the
product path: a study YAML per arm and seed in a scratch project, ``search.cli.main(["start",
...])`` in this process (one Ray for every study), state in ``./studies/optuna.db``. Then the
Optuna records are read back: every trial's intermediate values (epoch -> valid MRE).

- Arm B (baseline): ``sampler: random``, ``asha: false``: ``random_trials`` trials, each to
  ``max_epochs``. Its budget is the epochs it trained: random_trials x max_epochs.
- Arm A: ``sampler: tpe`` (Optuna's default: the first 10 trials are random) and ASHA (grace 1,
  reduction factor 3). Ray cannot stop on an epoch budget, so A gets a few more trials than it
  needs to spend B's budget (``budget / 3.25 + 1``: it measured 3.6-4.5 epochs a trial) and its
  history is then cut at B's budget. The cut is honest: trials run one at a time
  (``max_concurrent_trials: 1``, each trial owns both cores), so the history is time-ordered
  (trial number, then epoch), and what TPE and ASHA decided before the cut depends only on
  results before it. A trial that straddles the budget keeps only the epochs inside it.

The same seed drives both arms (sampler and training), so TPE's random startup draws the very
configurations B draws: over A's first 10 trials the comparison is ASHA pruning B's own trials
(paired, which removes most of the luck of the draw); TPE proposes from trial 11 on.

An "epoch" is one reported epoch (train + valid). The best MRE of an arm is the minimum over all
its reported epoch values (the best checkpoint a user would keep). Figures per seed:

- ``epochs_to_match_frac``: epochs A needed (counted in time order) until its best so far was <=
  B's final best, divided by B's budget. Target <= 1/3. ``inf`` when A never got there within the
  budget.
- ``best_mre_ratio``: A's best within the budget / B's best. Target <= 1.
- ``time_to_match_frac`` and ``time_ratio``: the same in wall time, from the Optuna timestamps
  (first trial start -> the epoch in question): A's time to reach B's best / B's time for the
  budget, and A's time for the budget / B's. Secondary and noisy (the machine is shared); they
  show what ASHA's many short trials cost beyond their epochs (each trial builds its model and
  opens its MLflow run).

The RATIO line gives the medians over the seeds (headline first).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import finish, header, parser

TARGET_FRAC = 1 / 3

# The searched space: parameters that matter on this task (the loss and the learning rate by an
# order of magnitude; sigma, batch size and warmup less). The cosine cycle is fitted to the epoch
# budget (t0_epochs = max_epochs) as a user would for a short search.
SPACE = """\
params:
  lr: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
  loss: {{type: categorical, choices: [adaptive_wing, heatmap]}}
  sigma: {{type: float, low: 0.5, high: 3.0}}
  batch_size: {{type: categorical, choices: [4, 8]}}
  warmup_epochs: {{type: int, low: 0, high: 2}}
fixed:
  model: hrnet
  backbone: hrnet_w18_small
  image_size: {image_size}
  t0_epochs: {max_epochs}
  checkpoint_every: 0
"""

STUDY = """\
name: {name}
dataset: {{format: synthetic, n: {n}, size: [193, 240], seed: 0}}
space: {space}
metric: mre_mm
mode: min
num_samples: {num_samples}
max_epochs: {max_epochs}
asha: {asha}
sampler: {sampler}
resources: {{cpu: 2, gpu: 0}}
max_concurrent_trials: 1
seed: {seed}
"""


@dataclass(frozen=True)
class Mode:
    seeds: tuple[int, ...]
    random_trials: int  # arm B's trials; its budget is random_trials x max_epochs
    max_epochs: int
    grace: int
    factor: int
    n: int  # synthetic images (70/15/15 split)
    image_size: int


MODES = {
    "smoke": Mode((0,), random_trials=2, max_epochs=2, grace=1, factor=2, n=12, image_size=32),
    "quick": Mode((0,), random_trials=6, max_epochs=9, grace=1, factor=3, n=60, image_size=64),
    "full": Mode((0, 1, 2), random_trials=10, max_epochs=9, grace=1, factor=3, n=60, image_size=64),
}
# Arm A's trials: ASHA's rungs would average ~2.3 epochs a trial, but one trial at a time
# promotes the first arrivals at each rung, and TPE's better trials get promoted more often:
# measured 3.6-4.5 epochs a trial. A few more trials than that need; the cut ends A, not the count.
A_EPOCHS_PER_TRIAL = 3.25
TPE_STARTUP = 10  # Optuna's TPESampler default n_startup_trials (random trials before TPE)


@dataclass
class Arm:
    """One study's time-ordered history: (trial number, epoch, MRE) and the trials' times."""

    name: str
    history: list[tuple[int, int, float]]
    spans: dict[int, tuple[dt.datetime, dt.datetime, int]]  # trial -> start, end, epochs
    params: dict[int, dict]  # trial -> sampled parameters
    states: dict[str, int]
    wall_s: float
    overlapping: int  # trials that started before the previous one ended (should be 0)

    def cut(self, budget: int) -> list[tuple[int, int, float]]:
        return self.history[:budget]

    def best(self, budget: int | None = None) -> float:
        kept = self.history if budget is None else self.cut(budget)
        return min((v for _, _, v in kept), default=math.inf)

    def epochs_to_reach(self, target: float, budget: int | None = None) -> float:
        """Epochs (1-based, time order) until the best so far is <= target; inf if never."""
        kept = self.history if budget is None else self.cut(budget)
        for i, (_, _, value) in enumerate(kept, 1):
            if value <= target:
                return i
        return math.inf

    def seconds_for(self, budget: int) -> float:
        """Wall seconds from the first trial's start until ``budget`` epochs were trained."""
        kept = self.cut(budget)
        if not kept:
            return 0.0
        first = min(start for start, _, _ in self.spans.values())
        last_trial = kept[-1][0]
        used = sum(1 for t, _, _ in kept if t == last_trial)
        start, end, epochs = self.spans[last_trial]
        end_at = start + (end - start) * (used / max(epochs, 1))
        return (end_at - first).total_seconds()

    def trials_in(self, budget: int) -> list[int]:
        return sorted({t for t, _, _ in self.cut(budget)})

    def trial_at(self, epochs: float) -> int | None:
        """The trial that trained the ``epochs``-th epoch (1-based); None past the history."""
        return self.history[int(epochs) - 1][0] if epochs <= len(self.history) else None


def read_arm(project: Path, name: str, wall_s: float) -> Arm:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{project}/studies/optuna.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    history, spans, states = [], {}, {}
    params = {t.number: t.params for t in trials}
    overlapping, previous_end = 0, None
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
        steps = sorted(t.intermediate_values)
        if steps != list(range(1, len(steps) + 1)):
            sys.exit(f"{name}: trial {t.number} reported epochs {steps}, expected 1..k")
        history += [(t.number, s, t.intermediate_values[s]) for s in steps]
        if t.datetime_start is not None and t.datetime_complete is not None:
            spans[t.number] = (t.datetime_start, t.datetime_complete, len(steps))
            if previous_end is not None and t.datetime_start < previous_end:
                overlapping += 1
            previous_end = t.datetime_complete
    return Arm(name, history, spans, params, states, wall_s, overlapping)


def run_study(project: Path, log, tag: str, mode: Mode, arm: str, seed: int) -> Arm:
    """Write the study file, run ``start`` in-process (its output to ``log``), read the records."""
    from search.cli import main

    budget = mode.random_trials * mode.max_epochs
    if arm == "B":
        sampler, asha, num_samples = "random", "false", mode.random_trials
    else:
        sampler = "tpe"
        asha = f"{{grace_period: {mode.grace}, reduction_factor: {mode.factor}}}"
        num_samples = math.ceil(budget / A_EPOCHS_PER_TRIAL) + 1
    name = f"se-{tag}-{arm}-s{seed}"
    study_file = project / f"{name}.yaml"
    study_file.write_text(
        STUDY.format(
            name=name,
            n=mode.n,
            space=f"space-{tag}.yaml",
            num_samples=num_samples,
            max_epochs=mode.max_epochs,
            asha=asha,
            sampler=sampler,
            seed=seed,
        )
    )
    print(f"\n===== {name} =====", file=log, flush=True)
    start = time.perf_counter()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        rc = main(["start", str(study_file), "--fresh"])
    wall = time.perf_counter() - start
    log.flush()
    if rc != 0:
        sys.exit(f"{name}: search.py start exited {rc}; see {log.name}")
    found = read_arm(project, name, wall)
    print(
        f"  {name}: {num_samples} trials, {len(found.history)} epochs, best "
        f"{found.best():.3f} mm, {wall:.0f} s",
        flush=True,
    )
    return found


def fmt(value: float, spec: str = ".3f") -> str:
    return "inf" if math.isinf(value) else format(value, spec)


def run_all(project: Path, tag: str, mode: Mode) -> list[tuple[int, Arm, Arm]]:
    """Every (seed, arm) study in ``project``, alternating which arm of a seed goes first."""
    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ["CEPHTUNE_CACHE_DIR"] = str(project / "cache")
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # MLflow state in ./mlruns of the scratch project
    (project / f"space-{tag}.yaml").write_text(
        SPACE.format(image_size=mode.image_size, max_epochs=mode.max_epochs)
    )
    here = Path.cwd()
    os.chdir(project)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        with open(project / f"studies-{tag}.log", "a") as log:
            rows = []
            for i, seed in enumerate(mode.seeds):
                arms = {}
                for arm in ("B", "A") if i % 2 == 0 else ("A", "B"):
                    arms[arm] = run_study(project, log, tag, mode, arm, seed)
                rows.append((seed, arms["A"], arms["B"]))
            return rows
    finally:
        ray.shutdown()
        os.chdir(here)


def report(rows: list[tuple[int, Arm, Arm]], mode: Mode, total: float) -> None:
    print()
    print(
        f"{'seed':>4} {'budget':>6} {'B best':>7} {'B ep':>5} {'A trials':>8} {'full':>4} "
        f"{'tpe':>4} {'A ep':>5} {'via':>4} {'frac':>6} {'A best':>7} {'A@1/3':>7} {'ratio':>6} "
        f"{'t frac':>6} {'t A/B':>6}"
    )
    fracs, ratios, t_fracs, t_ratios, notes = [], [], [], [], []
    for seed, a, b in rows:
        spent = len(b.history)  # B's budget as trained (every trial to max_epochs)
        b_best, a_best = b.best(), a.best(spent)
        to_match = a.epochs_to_reach(b_best, spent)
        inside = a.trials_in(spent)
        full = sum(1 for t in inside if a.spans.get(t, (0, 0, 0))[2] >= mode.max_epochs)
        tpe = sum(1 for t in inside if t >= TPE_STARTUP)
        via = a.trial_at(to_match)
        if via is None:
            via_text = "-"
        else:  # '=': the same draw as B's trial of that number (TPE's random startup)
            via_text = f"{via}{'=' if a.params.get(via) == b.params.get(via) else ''}"
        b_seconds = max(b.seconds_for(spent), 1e-9)
        t_frac = a.seconds_for(to_match) / b_seconds if math.isfinite(to_match) else math.inf
        fracs.append(to_match / spent)
        ratios.append(a_best / b_best)
        t_fracs.append(t_frac)
        t_ratios.append(a.seconds_for(spent) / b_seconds)
        print(
            f"{seed:>4} {spent:>6} {b_best:>7.3f} {fmt(b.epochs_to_reach(b_best), '.0f'):>5} "
            f"{len(inside):>8} {full:>4} {tpe:>4} {fmt(to_match, '.0f'):>5} {via_text:>4} "
            f"{fmt(fracs[-1]):>6} {a_best:>7.3f} {a.best(math.floor(spent * TARGET_FRAC)):>7.3f} "
            f"{ratios[-1]:>6.3f} {fmt(t_frac, '.2f'):>6} {t_ratios[-1]:>6.2f}"
        )
        if len(a.history) < spent:
            notes.append(f"seed {seed}: A trained only {len(a.history)} of {spent} epochs")
        for arm in (a, b):
            if arm.states.get("FAIL", 0):
                notes.append(f"{arm.name}: {arm.states['FAIL']} failed trial(s)")
            if arm.overlapping:
                notes.append(f"{arm.name}: {arm.overlapping} trial(s) overlapped (not in order)")
    print(
        "B ep: epochs B needed to reach its own best. A trials: A's trials inside the budget; "
        f"full: run to max_epochs; tpe: sampled by TPE (after its {TPE_STARTUP} random startup "
        "trials). A ep: epochs A needed to reach B's best, via its trial number ('=': the same "
        "draw as B's trial of that number); frac = A ep / budget (target <= 0.333). A best: "
        "within the budget; A@1/3: within its first third; ratio = A best / B best (target <= "
        "1). Wall time (Optuna timestamps, noisy): t frac = A's time to reach B's best / B's "
        "time for the budget; t A/B = A's time for the budget / B's."
    )
    for note in notes:
        print(f"note: {note}")
    frac, ratio = statistics.median(fracs), statistics.median(ratios)
    print(
        f"median over {len(rows)} seed(s): epochs_to_match_frac {fmt(frac)} (target <= 0.333, "
        f"met on {sum(f <= TARGET_FRAC + 1e-9 for f in fracs)}/{len(rows)}), best_mre_ratio "
        f"{ratio:.3f} (target <= 1, met on {sum(r <= 1 for r in ratios)}/{len(rows)}); "
        f"total {total:.0f} s"
    )
    finish(
        epochs_to_match_frac=frac,
        best_mre_ratio=ratio,
        time_to_match_frac=statistics.median(t_fracs),
        time_ratio=statistics.median(t_ratios),
        seeds=len(rows),
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 seed, fewer trials (~3 minutes)")
    args = p.parse_args()
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    mode = MODES[mode_name]
    header(f"search efficiency: ASHA + TPE vs random search without early stopping ({mode_name})")
    budget = mode.random_trials * mode.max_epochs
    print(
        f"task: synthetic n={mode.n} (193x240 px), hrnet_w18_small at {mode.image_size} px, "
        f"max_epochs {mode.max_epochs}; one trial at a time on 2 threads; seeds {list(mode.seeds)}"
    )
    print(
        f"B: random, no early stopping, {mode.random_trials} trials = budget {budget} epochs. "
        f"A: TPE + ASHA (grace {mode.grace}, factor {mode.factor}), history cut at that budget"
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
