"""The peer arms of ``search_efficiency.py``: the same search through the libraries' stock paths.

- ``ray_optunasearch`` (arm C): Ray Tune's own ``OptunaSearch`` (in-memory Optuna study, no
  RDB storage, Ray's bookkeeping: an ASHA-stopped trial is told COMPLETE with its last value)
  with cephtune's ASHA (``search.run.tuner.scheduler``), its sampler (``make_sampler``) and its
  trainable (``search.run.tuner.resourced``), the config built as ``tuner.Suggest`` builds it.
- ``optuna_native`` (arm D): Optuna's ``study.optimize`` with its ``SuccessiveHalvingPruner``, no
  Ray: the objective calls ``run_training`` in this process.

Both stop once they trained ``budget`` epochs (the epoch that spends it ends its trial), so their
histories need no cut beyond the one the caller makes anyway.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.search.optuna import OptunaSearch

from search.run import datasets, tuner
from search.spec.samplers import make_sampler
from search.spec.study import StudySpec
from trainables.config import EPOCHS_AFTER_WARMUP, TrainConfig
from trainables.data.cache import resolve_cache_dir


@dataclass
class History:
    """One arm's time-ordered history: (trial, epoch, MRE), trial in creation order."""

    name: str
    history: list[tuple[int, int, float]] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    trials: int = 0  # trials started
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def cut(self, budget: int) -> list[tuple[int, int, float]]:
        return self.history[:budget]

    def best(self, budget: int | None = None) -> float:
        kept = self.history if budget is None else self.cut(budget)
        return min((v for _, _, v in kept if math.isfinite(v)), default=math.inf)

    def epochs_to_reach(self, target: float, budget: int | None = None) -> float:
        """Epochs (1-based, time order) until the best so far is <= target; inf if never."""
        kept = self.history if budget is None else self.cut(budget)
        for i, (_, _, value) in enumerate(kept, 1):
            if value <= target:
                return i
        return math.inf

    def trials_in(self, budget: int) -> int:
        return len({t for t, _, _ in self.cut(budget)})

    def count(self, state: str) -> None:
        self.states[state] = self.states.get(state, 0) + 1


def _settings(spec: StudySpec) -> dict:
    """The constant trial settings ``lifecycle.start`` records for the study (``CONSTANTS``)."""
    return spec.trial_settings(datasets.prepare(spec.dataset), resolve_cache_dir())


class _Started(tune.Callback):
    """The trial ids in the order Ray started them (its ids carry no counter here)."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.order.append(trial.trial_id)


class _Budget(tune.Stopper):
    """Ends the whole experiment once ``budget`` epochs were reported."""

    def __init__(self, budget: int) -> None:
        self.budget, self.epochs = budget, set()

    def __call__(self, trial_id: str, result: dict) -> bool:
        # A function trainable's last result comes twice (again with done=True): count epochs.
        self.epochs.add((trial_id, result.get("training_iteration")))
        return False

    def stop_all(self) -> bool:
        return len(self.epochs) >= self.budget


def ray_optunasearch(spec: StudySpec, seed: int, budget: int, project: Path) -> History:
    """Arm C: ``OptunaSearch`` + ASHA on the trainable until ``budget`` epochs are spent."""
    found, started = History("C"), _Started()
    searcher = OptunaSearch(
        space=tuner.Suggest(spec.space, _settings(spec)),
        metric=spec.metric,
        mode=spec.mode,
        sampler=make_sampler(spec.sampler, seed),
    )
    run = tune.Tuner(
        tuner.resourced(spec, 0),
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=searcher,
            scheduler=tuner.scheduler(spec),
            num_samples=budget,  # every trial trains >= 1 epoch: the budget ends it first
            max_concurrent_trials=1,
            reuse_actors=True,
            trial_dirname_creator=tuner.trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=f"{spec.name}-C",
            storage_path=str(project / "ray-peers"),
            stop=_Budget(budget),
            callbacks=[started, CSVLoggerCallback(), JsonLoggerCallback()],
            verbose=0,
        ),
    )
    start = time.perf_counter()
    grid = run.fit()
    found.wall_s = time.perf_counter() - start
    results = [grid[i] for i in range(len(grid))]
    rank = {trial_id: i for i, trial_id in enumerate(started.order)}
    results.sort(key=lambda r: rank[Path(r.path).name.removeprefix("trial_")])
    for number, result in enumerate(results):
        found.trials += 1
        found.count("ERROR" if result.error else "TERMINATED")
        frame = result.metrics_dataframe
        if frame is None or spec.metric not in frame:
            continue
        frame = frame.sort_values("training_iteration")
        found.history += [
            (number, int(e), float(v))
            for e, v in zip(frame["epoch"], frame[spec.metric], strict=True)
        ]
    return found


def optuna_native(spec: StudySpec, seed: int, budget: int) -> History:
    """Arm D: ``study.optimize`` + ``SuccessiveHalvingPruner`` calling ``run_training`` here."""
    from trainables.train import run_training

    found = History("D")
    settings = _settings(spec)
    grace = spec.asha.grace_period if spec.asha else 1
    factor = spec.asha.reduction_factor if spec.asha else 3
    study = optuna.create_study(
        direction="minimize" if spec.mode == "min" else "maximize",
        sampler=make_sampler(spec.sampler, seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=grace, reduction_factor=factor),
    )
    spent = {"done": False}

    def objective(trial: optuna.Trial) -> float:
        fixed = spec.space.suggest(trial)
        cfg = TrainConfig.from_dict({**settings, **fixed, **trial.params}, "optuna_native")
        found.trials += 1
        last = {"value": math.inf}

        def report(metrics: dict, state) -> None:
            value = float(metrics[spec.metric])
            last["value"] = value
            found.history.append((trial.number, int(metrics["epoch"]), value))
            after = int(metrics[EPOCHS_AFTER_WARMUP])
            if after >= 1:  # the pruner compares trials past their warmup, as ASHA's rungs do
                trial.report(value, step=after)
            if len(found.history) >= budget:
                spent["done"] = True
                raise optuna.TrialPruned("epoch budget spent")
            if after >= 1 and trial.should_prune():
                raise optuna.TrialPruned()

        run_training(cfg, report, device="cpu")
        return last["value"]

    def stop_at_budget(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        found.count(trial.state.name)
        if spent["done"]:
            study.stop()

    start = time.perf_counter()
    # A trial that fails (a non-finite loss) is FAIL and the study goes on, as in the other arms.
    study.optimize(objective, n_trials=budget, callbacks=[stop_at_budget], catch=(RuntimeError,))
    found.wall_s = time.perf_counter() - start
    return found
