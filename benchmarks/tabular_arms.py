"""The arms of the tabular search benchmark, each searching the learning-curve table.

- A (cephtune): the product's searcher and scheduler (``search.run.tuner.search_alg`` and
  ``tune_config`` of the study spec: ``StudySearch`` on an Optuna RDB storage, the study's
  early stopping) in a real Ray Tune run, whose trainable looks each epoch up in the table
  instead of training it (``lookup``).
- B (random search): Optuna's ``RandomSampler`` on the same space, every trial to the end of
  its schedule, no early stopping. Its epochs are the budget.
- C (Ray's stock path): ``ray.tune.search.optuna.OptunaSearch`` with the same sampler and
  Ray's ``ASHAScheduler`` with the study's grace period and reduction factor, counted in
  training iterations, as a Ray user writes it.
- D (Optuna's stock path): ``study.optimize`` with the same sampler and a
  ``SuccessiveHalvingPruner`` of the same grace period and reduction factor, reporting every
  epoch.

Every arm runs one trial at a time, so its history is in time order, and stops once it has
spent the budget.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import optuna
from curves import Table
from histories import History
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from search.run import tuner
from search.run.searcher import LiveTrials
from search.studyfiles.samplers import SamplerSpec, make_sampler
from search.studyfiles.study import StudySpec
from trainables.config import EPOCHS_AFTER_WARMUP

TABLE_ENV = "CEPHTUNE_CURVES_TABLE"  # the table a lookup trial reads (workers inherit it)


@functools.cache
def _table(path: str) -> Table:
    return Table.load(Path(path))


class Diverged(RuntimeError):
    """The configuration's loss went non-finite when the table was built."""

    reason = "nan_loss"


def lookup(config: dict) -> None:
    """A Ray trial that reports the table's epochs of its configuration instead of training."""
    table = _table(os.environ[TABLE_ENV])
    row = table.row(config)
    warmup = table.snap(config)["warmup_epochs"]
    for epoch, (valid, test) in enumerate(zip(row["valid"], row["test"], strict=True), 1):
        tune.report(
            {
                "mre_mm": valid,
                "test_mre_mm": test,
                "epoch": epoch,
                EPOCHS_AFTER_WARMUP: max(0, epoch - warmup),
            }
        )
    if len(row["valid"]) < table.task.max_epochs:
        raise Diverged(f"nan_loss: non-finite training loss (epoch {len(row['valid']) + 1})")


class Recorder(tune.Callback):
    """Every epoch in the order Ray got it, each once (a function trainable's last result comes
    twice), with the trial numbered in the order it started."""

    def __init__(self, found: History) -> None:
        self.found = found
        self.numbers: dict[str, int] = {}
        self.seen: set[tuple[str, int]] = set()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.numbers.setdefault(trial.trial_id, len(self.numbers))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        key = (trial.trial_id, int(result["epoch"]))
        if key in self.seen:
            return
        self.seen.add(key)
        number = self.numbers[trial.trial_id]
        self.found.add(number, key[1], result["mre_mm"], result["test_mre_mm"])


class Budget(tune.Stopper):
    """Ends the whole experiment once ``budget`` epochs were reported."""

    def __init__(self, found: History, budget: int) -> None:
        self.found, self.budget = found, budget

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return len(self.found.history) >= self.budget


def _fit(name: str, trainable, config: tune.TuneConfig, found: History, budget: int, work: Path):
    run = tune.Tuner(
        trainable,
        tune_config=config,
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(work / "ray"),
            stop=Budget(found, budget),
            callbacks=[LiveTrials(), Recorder(found)],
            verbose=0,
        ),
    )
    start = time.perf_counter()
    grid = run.fit()
    found.wall_s = time.perf_counter() - start
    return grid


class Kept:
    """Keeps the early-stopping decisions the product writes to the study (``StudyNote``)."""

    def __init__(self) -> None:
        self.state: dict = {}

    def __call__(self, value: dict) -> None:
        self.state = value


def cephtune(spec: StudySpec, budget: int, work: Path) -> History:
    """Arm A: the product's search decisions against the table."""
    found, kept = History("A", spec.max_epochs), Kept()
    storage = optuna.storages.RDBStorage(f"sqlite:///{work}/{spec.name}.db")
    if any(s.study_name == spec.name for s in storage.get_all_studies()):
        optuna.delete_study(study_name=spec.name, storage=storage)
    direction = "minimize" if spec.mode == "min" else "maximize"
    study = optuna.create_study(study_name=spec.name, storage=storage, direction=direction)
    searcher = tuner.search_alg(spec, storage, {}, warm_start=True)
    config = tuner.tune_config(spec, searcher, kept)
    _fit(spec.name, tune.with_resources(lookup, {"cpu": 1}), config, found, budget, work)
    for trial in study.trials:
        found.trials += 1
        found.count(trial.state.name)
    found.rungs = kept.state
    return found


def random_search(spec: StudySpec, trials: int, table: Table) -> History:
    """Arm B: ``trials`` random configurations, each to the end of its schedule."""
    found = History("B", spec.max_epochs)
    study = optuna.create_study(sampler=make_sampler(SamplerSpec("random"), spec.seed))
    start = time.perf_counter()
    for _ in range(trials):
        trial = study.ask()
        spec.space.suggest(trial)
        row = table.row(trial.params)
        for epoch, (valid, test) in enumerate(zip(row["valid"], row["test"], strict=True), 1):
            found.add(found.trials, epoch, valid, test)
        found.trials += 1
        if len(row["valid"]) == spec.max_epochs:
            study.tell(trial, row["valid"][-1])
        else:  # diverged
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        found.count(study.trials[-1].state.name)
    found.wall_s = time.perf_counter() - start
    return found


def ray_optunasearch(spec: StudySpec, budget: int, work: Path) -> History:
    """Arm C: Ray's ``OptunaSearch`` with Ray's ``ASHAScheduler`` on training iterations."""
    found = History("C", spec.max_epochs)
    grace, factor = _halving(spec)
    config = tune.TuneConfig(
        metric=spec.metric,
        mode=spec.mode,
        search_alg=OptunaSearch(
            space=tuner.Suggest(spec.space, {}),
            metric=spec.metric,
            mode=spec.mode,
            sampler=make_sampler(spec.sampler, spec.seed),
        ),
        scheduler=ASHAScheduler(
            time_attr="training_iteration",
            max_t=spec.max_epochs,
            grace_period=grace,
            reduction_factor=factor,
        ),
        num_samples=budget,  # every trial reports >= 1 epoch: the budget ends it first
        max_concurrent_trials=1,
        reuse_actors=True,
    )
    trainable = tune.with_resources(lookup, {"cpu": 1})
    grid = _fit(f"{spec.name}-C", trainable, config, found, budget, work)
    for i in range(len(grid)):
        found.trials += 1
        found.count("ERROR" if grid[i].error else "TERMINATED")
    return found


def optuna_native(spec: StudySpec, budget: int, table: Table) -> History:
    """Arm D: ``study.optimize`` with a ``SuccessiveHalvingPruner``, reporting every epoch."""
    found = History("D", spec.max_epochs)
    grace, factor = _halving(spec)
    study = optuna.create_study(
        direction="minimize" if spec.mode == "min" else "maximize",
        sampler=make_sampler(spec.sampler, spec.seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=grace, reduction_factor=factor),
    )

    def objective(trial: optuna.Trial) -> float:
        spec.space.suggest(trial)
        row = table.row(trial.params)
        number = found.trials
        found.trials += 1
        for epoch, (valid, test) in enumerate(zip(row["valid"], row["test"], strict=True), 1):
            found.add(number, epoch, valid, test)
            trial.report(valid, step=epoch)
            if len(found.history) >= budget or trial.should_prune():
                raise optuna.TrialPruned()
        if len(row["valid"]) < spec.max_epochs:
            raise Diverged("nan_loss")
        return row["valid"][-1]

    def stop_at_budget(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        found.count(trial.state.name)
        if len(found.history) >= budget:
            study.stop()

    start = time.perf_counter()
    study.optimize(objective, n_trials=budget, callbacks=[stop_at_budget], catch=(Diverged,))
    found.wall_s = time.perf_counter() - start
    return found


def _halving(spec: StudySpec) -> tuple[int, int]:
    """The grace period and reduction factor the study's early stopping starts from."""
    if spec.asha is None:
        return 1, 3
    return spec.asha.grace_period, spec.asha.reduction_factor
