"""The peer arms of ``search_efficiency.py``: the same search through the libraries' stock paths,
as their users write it, with cephtune's sampler and the study's grace period and reduction
factor, training for real.

- ``ray_optunasearch`` (arm C): Ray Tune's own ``OptunaSearch`` (in-memory Optuna study: an
  ASHA-stopped trial is told COMPLETE with its last value) and Ray's ``ASHAScheduler`` counted
  in training iterations, on cephtune's trainable (``search.run.tuner.resourced``) with the
  config built as ``tuner.Suggest`` builds it.
- ``optuna_native`` (arm D): Optuna's ``study.optimize`` with its ``SuccessiveHalvingPruner``,
  reporting every epoch, no Ray: the objective calls ``run_training`` in this process.

Both stop once they trained ``budget`` epochs (the epoch that spends it ends its trial).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import optuna
from histories import History
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from search.run import datasets, tuner
from search.studyfiles.samplers import make_sampler
from search.studyfiles.study import StudySpec
from trainables.config import TrainConfig
from trainables.data.cache import resolve_cache_dir


def settings(spec: StudySpec) -> dict:
    """The constant trial settings ``lifecycle.start`` records for the study (``CONSTANTS``)."""
    return spec.trial_settings(datasets.prepare(spec.dataset), resolve_cache_dir())


def halving(spec: StudySpec) -> tuple[int, int]:
    """The grace period and reduction factor of the study's early stopping."""
    if spec.asha is None:
        return 1, 3
    return spec.asha.grace_period, spec.asha.reduction_factor


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


def ray_optunasearch(spec: StudySpec, budget: int, project: Path) -> History:
    """Arm C: ``OptunaSearch`` + Ray's ASHA on the trainable until ``budget`` epochs are spent."""
    found, started = History("C", spec.max_epochs), _Started()
    grace, factor = halving(spec)
    searcher = OptunaSearch(
        space=tuner.Suggest(spec.space, settings(spec)),
        metric=spec.metric,
        mode=spec.mode,
        sampler=make_sampler(spec.sampler, spec.seed),
    )
    run = tune.Tuner(
        tuner.resourced(spec, 0),
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=searcher,
            scheduler=ASHAScheduler(
                time_attr="training_iteration",
                max_t=spec.max_epochs,
                grace_period=grace,
                reduction_factor=factor,
            ),
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
        found.params[number] = {k: result.config[k] for k in _searched(spec, result.config)}
        frame = result.metrics_dataframe
        if frame is None or spec.metric not in frame:
            continue
        frame = frame.sort_values("training_iteration").drop_duplicates("training_iteration")
        for e, v in zip(frame["epoch"], frame[spec.metric], strict=True):
            found.add(number, int(e), float(v))
    return found


def _searched(spec: StudySpec, config: dict) -> list[str]:
    return [p.name for p in spec.space.params if p.name in config]


def optuna_native(spec: StudySpec, budget: int) -> History:
    """Arm D: ``study.optimize`` + ``SuccessiveHalvingPruner`` calling ``run_training`` here."""
    from trainables.train import run_training

    found = History("D", spec.max_epochs)
    constants = settings(spec)
    grace, factor = halving(spec)
    study = optuna.create_study(
        direction="minimize" if spec.mode == "min" else "maximize",
        sampler=make_sampler(spec.sampler, spec.seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=grace, reduction_factor=factor),
    )
    spent = {"done": False}

    def objective(trial: optuna.Trial) -> float:
        fixed = spec.space.suggest(trial)
        cfg = TrainConfig.from_dict({**constants, **fixed, **trial.params}, "optuna_native")
        number = found.trials
        found.trials += 1
        found.params[number] = dict(trial.params)
        last = {"value": math.inf}

        def report(metrics: dict, state) -> None:
            value = float(metrics[spec.metric])
            last["value"] = value
            found.add(number, int(metrics["epoch"]), value)
            trial.report(value, step=int(metrics["epoch"]))
            if len(found.history) >= budget:
                spent["done"] = True
                raise optuna.TrialPruned("epoch budget spent")
            if trial.should_prune():
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
